// Where things live: the repository, the cache of heavy builds outside it,
// and per-run scratch folders.
import { mkdtempSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const repoRoot = resolve(import.meta.dirname, '../..');

/** The built `irqtrace` command (npm run build). */
export const agentCli = join(repoRoot, 'agent', 'dist', 'cli', 'main.js');

/** The built `irqtrace-operator` program (npm run build). */
export const operatorMain = join(repoRoot, 'operator', 'dist', 'main.js');

/** Heavy builds (kernels, control-plane binaries) are cached here, keyed by version. */
export const cacheDir = process.env.IRQTRACE_CACHE ?? join(homedir(), '.cache', 'irqtrace');

/**
 * A fresh scratch folder. It is under /tmp, which QEMU guests see read-only
 * at /hostroot/tmp, so files made here can be handed to a guest.
 */
export function scratchDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `irqtrace-${prefix}-`));
}
