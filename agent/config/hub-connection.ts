import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { CompiledAgentOptions } from './agent-options.js';

/** How the agent reaches the hub: channel credentials, per-call metadata and channel options. */
export interface HubConnection {
  credentials: grpc.ChannelCredentials;
  metadata: () => grpc.Metadata;
  channelOptions: grpc.ChannelOptions;
}

/**
 * Builds the hub connection from the settings: TLS with the hub's CA and, for mutual TLS, the
 * client certificate; a bearer token is read from its file at every (re)connect, so a rotated
 * Secret takes effect without a restart.
 */
export function hubConnection(options: CompiledAgentOptions): HubConnection {
  const credentials = options.insecure
    ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(
        readFileSync(options.tlsCaFile ?? ''),
        options.tlsKeyFile === undefined ? null : readFileSync(options.tlsKeyFile),
        options.tlsCertFile === undefined ? null : readFileSync(options.tlsCertFile),
      );
  const tokenFile = options.tokenFile;
  return {
    credentials,
    metadata: () => {
      const metadata = new grpc.Metadata();
      if (tokenFile !== undefined) {
        metadata.set('authorization', `Bearer ${readFileSync(tokenFile, 'utf8').trim()}`);
      }
      return metadata;
    },
    channelOptions:
      options.tlsServerName === undefined
        ? {}
        : { 'grpc.ssl_target_name_override': options.tlsServerName },
  };
}
