// Locates the guest kernels that test/setup prepared (Debian's own, and the
// project's tracing kernel) and their initramfs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';
import { run, runOk } from '../lib/process.js';

export type Flavour = 'debian' | 'tracing';

export interface Kernel {
  flavour: Flavour;
  /** uname -r in the guest. */
  release: string;
  /** Cache directory holding everything below. */
  dir: string;
  vmlinux: string;
  /** lib/modules/<release> of this kernel. */
  modulesDir: string;
  /** Tree to build out-of-tree modules against: make -C buildDir M=... */
  buildDir: string;
  /** The kernel's .config. */
  config: string;
  initramfs: string;
}

const scripts: Record<Flavour, string> = {
  debian: join(repoRoot, 'test/vm/prepare-debian-kernel.sh'),
  tracing: join(repoRoot, 'test/vm/build-tracing-kernel.sh'),
};

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

const found = new Map<Flavour, Kernel>();

/**
 * The kernel of that flavour, from the cache. Fails with one clear line when
 * test/setup has not built it (building the tracing kernel takes ~11 min,
 * which is setup's job, not a test's).
 */
export async function kernel(flavour: Flavour): Promise<Kernel> {
  const known = found.get(flavour);
  if (known) return known;
  const located = await run(scripts[flavour], ['--cached-only'], { timeoutMs: 60_000 });
  const dir = located.stdout.trim().split('\n').pop() ?? '';
  if (located.code !== 0 || !dir) {
    throw new Error(`the ${flavour} guest kernel is not built: run test/setup (${located.stderr.trim()})`);
  }
  const env = parseEnv(readFileSync(join(dir, 'kernel.env'), 'utf8'));
  const initramfs = (await runOk(join(repoRoot, 'test/vm/build-initramfs.sh'), [dir], { timeoutMs: 120_000 })).trim().split('\n').pop() ?? '';
  const k: Kernel = {
    flavour,
    release: env.RELEASE ?? '',
    dir,
    vmlinux: env.VMLINUX ?? '',
    modulesDir: env.MODULES_DIR ?? '',
    buildDir: env.BUILD_DIR ?? '',
    config: env.CONFIG ?? '',
    initramfs,
  };
  found.set(flavour, k);
  return k;
}

/** Whether the kernel's .config sets option (e.g. "CONFIG_KPROBES") to y or m. */
export function hasConfig(k: Kernel, option: string): boolean {
  return new RegExp(`^${option}=[ym]$`, 'm').test(readFileSync(k.config, 'utf8'));
}

/** Builds the out-of-tree module in dir (with its Kbuild/Makefile) against kernel k. */
export async function buildModule(k: Kernel, dir: string): Promise<void> {
  await runOk('make', ['-C', k.buildDir, `M=${dir}`, `-j2`, 'modules'], { timeoutMs: 300_000 });
}
