import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';

/**
 * An HTTP relay in front of the ELBv2 simulator for one worker process (its
 * `AWS_ENDPOINT_URL_*`). While `holdRegistrations` is set, RegisterTargets requests are kept
 * unanswered and never reach the simulator: a worker killed then dies inside the call, and AWS
 * never saw it.
 */
export class AwsRequestGate {
  holdRegistrations = false;
  /** RegisterTargets requests held so far. */
  held = 0;
  readonly #server: Server;
  readonly #upstream: URL;
  readonly #pending = new Set<ServerResponse>();

  constructor(upstreamUrl: string) {
    this.#upstream = new URL(upstreamUrl);
    this.#server = createServer((req, res) => this.#serve(req, res));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('gate has no port');
    return `http://127.0.0.1:${address.port}`;
  }

  #serve(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (this.holdRegistrations && /(^|&)Action=RegisterTargets(&|$)/.test(body.toString())) {
        this.held++;
        this.#pending.add(res);
        res.on('close', () => this.#pending.delete(res));
        return;
      }
      const upstream = httpRequest(
        {
          host: this.#upstream.hostname,
          port: this.#upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      upstream.end(body);
    });
  }

  async close(): Promise<void> {
    for (const res of this.#pending) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
