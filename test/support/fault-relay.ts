import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay between agents and hub replicas that a test controls, as a load balancer in front
 * of the replicas would be: each new connection goes to the first upstream that accepts it (a
 * killed replica refuses, the next one takes over). Faults: `cut()` ends every open connection
 * with FIN, `reset()` with RST, `hold()` also keeps new connections waiting until `release()`,
 * `delayMs` delays every chunk in both directions (order is kept).
 */
export class FaultRelay {
  /** Upstream ports, tried in order for each new connection. */
  upstreams: number[];
  /** Delay added to every chunk, both directions. */
  delayMs = 0;
  /** Connections forwarded so far, by upstream port. */
  readonly connections = new Map<number, number>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #waiting: Socket[] = [];
  #held = false;

  constructor(upstreams: number[]) {
    this.upstreams = upstreams;
    this.#server = createServer((client) => {
      client.pause();
      client.on('error', () => undefined);
      if (this.#held) this.#waiting.push(client);
      else this.#forward(client, 0);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('relay has no port');
    return address.port;
  }

  /** Open connections (each counts its two sockets once). */
  get open(): number {
    return this.#sockets.size / 2;
  }

  /** Ends every open connection (FIN). */
  cut(): void {
    for (const s of this.#sockets) s.destroy();
  }

  /** Resets every open connection (RST). */
  reset(): void {
    for (const s of this.#sockets) s.resetAndDestroy();
  }

  /** Cuts the open connections and keeps new ones waiting, unanswered, until {@link release}. */
  hold(): void {
    this.#held = true;
    this.cut();
  }

  release(): void {
    this.#held = false;
    for (const client of this.#waiting.splice(0)) {
      if (!client.destroyed) this.#forward(client, 0);
    }
  }

  #forward(client: Socket, index: number): void {
    const port = this.upstreams[index];
    if (port === undefined || client.destroyed) {
      client.destroy();
      return;
    }
    const upstream = connect(port, '127.0.0.1');
    upstream.on('error', () => undefined);
    const refused = (): void => {
      upstream.destroy();
      this.#forward(client, index + 1);
    };
    upstream.once('error', refused);
    upstream.once('connect', () => {
      upstream.off('error', refused);
      this.connections.set(port, (this.connections.get(port) ?? 0) + 1);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => {
          this.#sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      this.#pipe(client, upstream);
      this.#pipe(upstream, client);
      client.resume();
    });
  }

  #pipe(from: Socket, to: Socket): void {
    // A chain of timers keeps chunks in order whatever the delay was when each arrived.
    let last = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      const delay = this.delayMs;
      if (delay <= 0) {
        last = last.then(() => {
          if (!to.destroyed) to.write(chunk);
        });
        return;
      }
      const due = Date.now() + delay;
      last = last.then(
        () =>
          new Promise<void>((resolve) =>
            setTimeout(
              () => {
                if (!to.destroyed) to.write(chunk);
                resolve();
              },
              Math.max(0, due - Date.now()),
            ),
          ),
      );
    });
  }

  async close(): Promise<void> {
    for (const s of [...this.#sockets, ...this.#waiting]) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
