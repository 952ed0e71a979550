import * as grpc from '@grpc/grpc-js';
import { AdminServiceClient, type Alert } from '../../shared/index.js';
import { bearer } from './test-hub-settings.js';

/** The alerts a hub's admin API reports firing (ListAlerts). */
export function listAlerts(admin: AdminServiceClient, token: string): Promise<Alert[]> {
  return new Promise((resolve, reject) =>
    admin.listAlerts({}, bearer(token), (err, res) => (err ? reject(err) : resolve(res.alerts))),
  );
}

/** `name{label=value,…}` of each alert, sorted: compact to compare and to print. */
export function alertKeys(alerts: readonly Alert[]): string[] {
  return alerts
    .map(
      (a) =>
        `${a.name}{${Object.entries(a.labels)
          .sort(([x], [y]) => (x < y ? -1 : 1))
          .map(([k, v]) => `${k}=${v}`)
          .join(',')}}`,
    )
    .sort();
}

/** An admin client of a hub process on loopback (plaintext). */
export function adminClient(port: number): AdminServiceClient {
  return new AdminServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}
