// What the driver loader leaves for the agent container (a file in a volume the
// two share): the module to use, or why there is none, so the agent goes
// straight to eBPF and the node's status says why.
import { readFile, rename, writeFile } from 'node:fs/promises';

interface Key {
  release: string;
  /** The running kernel's GNU build id ('no-build-id' without one). */
  buildId: string;
  sourceDigest: string;
  /** The loader's whole run. */
  seconds: number;
}

export type DriverOutcome =
  | {
      ok: true;
      how: 'already loaded' | 'cached' | 'built';
      /** The checked module file, for the agent to load (again, after it unloaded it); null when only a loaded one fits. */
      module: string | null;
      buildSeconds?: number;
    }
  | { ok: false; reason: string };

export type DriverState = Key & DriverOutcome;

export async function writeDriverState(path: string, state: DriverState): Promise<void> {
  await writeFile(`${path}.tmp`, `${JSON.stringify(state)}\n`);
  await rename(`${path}.tmp`, path);
}

/** The loader's state, or undefined when there is none (no loader ran: not in a pod). */
export async function readDriverState(path: string): Promise<DriverState | undefined> {
  const text = await readFile(path, 'utf8').catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  });
  return text === undefined ? undefined : (JSON.parse(text) as DriverState);
}
