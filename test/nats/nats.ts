// A real nats-server with JetStream on a random 127.0.0.1 port and its own
// store directory, for tests.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { binary } from '../cluster/binaries.js';
import { scratchDir } from '../lib/paths.js';
import { freePort } from '../lib/ports.js';
import { Service } from '../lib/process.js';

export interface Nats {
  /** nats://127.0.0.1:<port> */
  url: string;
  port: number;
  storeDir: string;
  /** Stops the server; with keepStore the JetStream data survives for a restart. */
  stop(options?: { keepStore?: boolean }): Promise<void>;
  /** Starts the server again on the same port and store (after stop({ keepStore: true })). */
  restart(): Promise<void>;
}

export async function startNats(): Promise<Nats> {
  const bin = await binary('nats', 'nats-server');
  const work = scratchDir('nats');
  const storeDir = join(work, 'jetstream');
  const port = await freePort();
  let server: Service | undefined;

  const start = async () => {
    server = new Service('nats-server', bin, [
      '--addr', '127.0.0.1',
      '--port', String(port),
      '--jetstream',
      '--store_dir', storeDir,
      '--server_name', 'irqtrace-test',
    ], join(work, 'nats.log'));
    await server.waitForOutput(/Server is ready/, 30_000);
  };
  await start();

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async stop(options = {}) {
      await server?.stop();
      if (!options.keepStore) rmSync(work, { recursive: true, force: true });
    },
    restart: start,
  };
}
