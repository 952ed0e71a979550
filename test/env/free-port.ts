import { createServer } from 'node:net';

/** A free TCP port on 127.0.0.1, chosen by the kernel. Never a fixed port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port from listen(0)'));
      });
    });
  });
}
