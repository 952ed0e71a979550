import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay in front of the hub's agent listener, one per cluster, so that the test decides
 * when an agent may resync: holding cuts the open connections (a stream ended by the hub would
 * otherwise be opened again on the same HTTP/2 connection) and new ones wait unanswered until
 * released (refusing them would push gRPC's reconnect backoff out to many seconds).
 */
export class HoldableRelay {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #waiting: Socket[] = [];
  readonly #targetPort: number;
  #held = false;

  constructor(targetPort: number) {
    this.#targetPort = targetPort;
    this.#server = createServer((client) => {
      if (this.#held) {
        client.pause();
        client.on('error', () => undefined);
        this.#waiting.push(client);
        return;
      }
      this.#forward(client);
    });
  }

  hold(): void {
    this.#held = true;
    for (const s of this.#sockets) s.destroy();
  }

  release(): void {
    this.#held = false;
    for (const client of this.#waiting.splice(0)) {
      if (!client.destroyed) this.#forward(client);
    }
  }

  #forward(client: Socket): void {
    {
      const upstream = connect(this.#targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.#sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
      client.resume();
    }
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('relay has no port');
    return address.port;
  }

  async close(): Promise<void> {
    for (const s of [...this.#sockets, ...this.#waiting]) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
