// Building irqtrace.ko from its shipped source against a kernel's headers
// (/lib/modules/<release>/build), as node agents do when no module fits.
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, symlink } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { exists } from '../util/fs.js';
import type { Exec } from '../backend/exec.js';

/** Module source files that go into the build (not the tests, the eBPF side or the selftest). */
const builtFrom = (source: string, path: string): boolean => !['test', 'bpf', 'selftest'].includes(relative(source, path).split(sep)[0] ?? '');

/** A digest of the module's source: with the kernel, the key of a built module. */
export async function sourceDigest(source: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (!builtFrom(source, path)) continue;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) hash.update(relative(source, path)).update('\0').update(await readFile(path)).update('\0');
    }
  };
  await walk(source);
  return hash.digest('hex').slice(0, 16);
}

/**
 * Links the host's kbuild trees (Debian: /usr/lib/linux-kbuild-<version>, the
 * target of its headers' scripts/ and tools/) into this system's /usr/lib,
 * leaving any of the same name alone. Returns the names linked.
 */
export async function linkHostKbuild(hostUsrLib: string, usrLib: string): Promise<string[]> {
  const names = (await readdir(hostUsrLib).catch(() => [] as string[])).filter((n) => n.startsWith('linux-kbuild-'));
  const linked: string[] = [];
  for (const name of names) {
    if (await exists(join(usrLib, name))) continue;
    await symlink(join(hostUsrLib, name), join(usrLib, name)).catch((err: unknown) => {
      throw new BuildError(`cannot link the host's ${name} into ${usrLib}: ${String(err)}`);
    });
    linked.push(name);
  }
  return linked;
}

export class BuildError extends Error {
  override name = 'BuildError';
}

/** How many of the compiler's last lines a failed build's reason carries. */
const REASON_LINES = 4;

/** The lines of a failed build that say why: the compiler's first errors, else the last lines (make's own). */
export function buildFailure(stderr: string): string {
  const lines = stderr.trim().split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const errors = lines.filter((l) => /\b(fatal )?error:/i.test(l));
  return (errors.length ? errors.slice(0, REASON_LINES) : lines.slice(-REASON_LINES)).join(' | ');
}

/**
 * Builds irqtrace.ko from source against the headers at build in a scratch copy
 * (the source may be read-only); returns the built file's path.
 */
export async function buildModule(source: string, build: string, run: Exec, scratch = tmpdir()): Promise<string> {
  if (!(await exists(join(build, 'Makefile')))) throw new BuildError(`no kernel headers at ${build}`);
  const dir = await mkdtemp(join(scratch, 'irqtrace-kmod-'));
  await cp(source, dir, { recursive: true, filter: (path) => builtFrom(source, path) });
  // Seven files: more jobs than that gain nothing.
  const jobs = Math.min(availableParallelism(), 7);
  const made = await run('make', [`-j${jobs}`, '-C', build, `M=${dir}`, 'modules'], { timeoutMs: 1_800_000 });
  if (made.code !== 0) throw new BuildError(`building irqtrace.ko against ${build} failed: ${buildFailure(made.stderr || made.stdout)}`);
  return join(dir, 'irqtrace.ko');
}
