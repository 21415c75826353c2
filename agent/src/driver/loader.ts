// The driver loader (`irqtrace driver load`): the agent pod's init container,
// as Falco runs one. In order, it
//   1. keeps a module already loaded whose record ABI is this agent's
//      (unloads one of another ABI);
//   2. takes the one cached for this exact kernel (<cache>/<release>/
//      <build id>-<source digest>/irqtrace.ko, checked: the file's digest
//      against its manifest, its vermagic against the kernel's release and the
//      build's, its ABI; a file that fails is thrown away and rebuilt, never
//      loaded);
//   3. else builds it against /lib/modules/<release>/build and caches it;
//   4. else says why (module loading disabled, lockdown, no headers, the
//      compiler's error) in the state file, and the agent uses eBPF.
// The state file is what the agent container reads: it never builds anything,
// and it is the one that loads the checked file. A module loaded here would
// stay loaded if the pod went before its agent started (a trace deleted
// meanwhile: seen on the test nodes); loaded by the agent, it is unloaded by
// the agent at SIGTERM.
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { release as osRelease } from 'node:os';
import { dirname, join } from 'node:path';
import { exec as defaultExec } from '../backend/exec.js';
import type { Exec } from '../backend/exec.js';
import { ABI_VERSION } from '../records/layout.js';
import { exists } from '../util/fs.js';
import { BuildError, buildModule, linkHostKbuild, sourceDigest } from './build.js';
import { kernelBuildId, moduleInfo } from './module_file.js';
import { lockedDown, modulesDisabled } from './refusals.js';
import type { DriverOutcome, DriverState } from './state.js';

export interface DriverOptions {
  /** The module's source (kmod/ as the image ships it). */
  source: string;
  /** Where built modules are kept on the node: <cache>/<release>/<build id>-<source digest>/. */
  cacheDir: string;
  kernelRelease?: string;
  sysRoot?: string;
  procRoot?: string;
  modulesRoot?: string;
  /** The host's /usr/lib as mounted here, for Debian's headers (linked to its linux-kbuild-<version>). */
  hostUsrLib?: string;
  usrLib?: string;
  /** Scratch space for the build. */
  scratch?: string;
  exec?: Exec;
  /** Progress, one line per step: what a person reading the init container's log wants. */
  log?: (fields: Record<string, unknown>, message: string) => void;
}

/** What is written next to a cached module: the checks a later loader repeats. */
interface Manifest {
  release: string;
  buildId: string;
  sourceDigest: string;
  sha256: string;
  vermagic: string;
  abi: string;
  buildSeconds: number;
}

const seconds = (since: number) => Math.round((performance.now() - since) / 10) / 100;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

class Refused extends Error {}

/** The log line of each outcome: what a person reading the init container's log wants to know. */
const SAID = {
  'already loaded': "the loaded module has this agent's record ABI: the agent takes it over",
  cached: 'the module cached for this kernel passed its checks: no build; the agent loads it',
  built: "built against the node's headers and cached; the agent loads it",
} as const;

export async function loadDriver(o: DriverOptions): Promise<DriverState> {
  const started = performance.now();
  const run = o.exec ?? defaultExec;
  const say = o.log ?? (() => undefined);
  const sys = o.sysRoot ?? '/sys';
  const rel = o.kernelRelease ?? osRelease();
  const buildId = kernelBuildId(await readFile(join(sys, 'kernel/notes')).catch(() => Buffer.alloc(0))) ?? 'no-build-id';
  const digest = await sourceDigest(o.source);
  const dir = join(o.cacheDir, rel, `${buildId.slice(0, 20)}-${digest}`);
  const ko = join(dir, 'irqtrace.ko');
  const key = { release: rel, buildId, sourceDigest: digest };
  const done = (outcome: DriverOutcome): DriverState => {
    const full: DriverState = { ...outcome, ...key, seconds: seconds(started) };
    say({ ...full }, full.ok ? `driver: ${SAID[full.how]}` : `driver: no module, the agent will use eBPF: ${full.reason}`);
    return full;
  };

  // 1. A module already loaded.
  const loaded = join(sys, 'module/irqtrace');
  if (await exists(loaded)) {
    const abi = (await readFile(join(loaded, 'version'), 'utf8').catch(() => '')).trim();
    if (abi === String(ABI_VERSION)) {
      return done({ ok: true, how: 'already loaded', module: (await verified(ko, rel, buildId, digest).then(() => true, () => false)) ? ko : null });
    }
    say({ abi: abi || null, want: ABI_VERSION }, 'driver: the loaded irqtrace module has another ABI: unloading it');
    const r = await run('rmmod', ['irqtrace'], { timeoutMs: 120_000 });
    if (r.code !== 0) return done({ ok: false, reason: `an irqtrace module of another ABI (${abi || 'unknown'}) is loaded and cannot be unloaded: ${lastLine(r.stderr)}` });
  }

  // Refusals the kernel would give only after minutes of building.
  const refused = (await modulesDisabled(o.procRoot)) ?? (await lockedDown(sys));
  if (refused) return done({ ok: false, reason: refused });

  // 2. The cached module, checked.
  if (await exists(dir)) {
    try {
      await verified(ko, rel, buildId, digest);
      return done({ ok: true, how: 'cached', module: ko });
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      say({ path: ko, why: err.message }, 'driver: the cached module failed its checks: removing it and building another');
      await rm(dir, { recursive: true, force: true });
    }
  }

  // 3. Built against the node's headers, then cached.
  const build = join(o.modulesRoot ?? '/lib/modules', rel, 'build');
  if (!(await exists(join(build, 'Makefile')))) {
    return done({ ok: false, reason: `no kernel headers at ${build} to build the module against (install the headers of ${rel} on the node)` });
  }
  if (o.hostUsrLib) await linkHostKbuild(o.hostUsrLib, o.usrLib ?? '/usr/lib');
  say({ headers: build }, 'driver: building irqtrace.ko against the node\'s headers (minutes on a slow node)');
  const buildStarted = performance.now();
  let built: string;
  try {
    built = await buildModule(o.source, build, run, o.scratch);
  } catch (err) {
    if (err instanceof BuildError) return done({ ok: false, reason: err.message });
    throw err;
  }
  const bytes = await readFile(built);
  const info = moduleInfo(bytes);
  const manifest: Manifest = { ...key, sha256: sha256(bytes), vermagic: info?.vermagic ?? '', abi: info?.version ?? '', buildSeconds: seconds(buildStarted) };
  // Whole or absent: a directory is renamed into place only once its files are written.
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await copyFile(built, join(tmp, 'irqtrace.ko'));
  await writeFile(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dirname(dir), { recursive: true });
  await rename(tmp, dir);
  await rm(dirname(built), { recursive: true, force: true });
  try {
    await verified(ko, rel, buildId, digest);
  } catch (err) {
    if (err instanceof Refused) return done({ ok: false, reason: `the module built against ${build} does not fit this kernel: ${err.message}` });
    throw err;
  }
  return done({ ok: true, how: 'built', module: ko, buildSeconds: manifest.buildSeconds });
}

/** The checks a cached module passes before it is handed to the agent; a Refused error says which failed. */
async function verified(ko: string, rel: string, buildId: string, digest: string): Promise<void> {
  const manifest = JSON.parse(await readFile(join(dirname(ko), 'manifest.json'), 'utf8').catch(() => 'null')) as Manifest | null;
  if (!manifest) throw new Refused('no readable manifest.json');
  const bytes = await readFile(ko).catch(() => undefined);
  if (!bytes) throw new Refused('no module file');
  if (sha256(bytes) !== manifest.sha256) throw new Refused(`its digest is not the one it was built with (${bytes.length} bytes: cut short or changed)`);
  const info = moduleInfo(bytes);
  if (!info?.vermagic) throw new Refused('not a kernel module (no .modinfo vermagic)');
  if (info.vermagic.split(' ')[0] !== rel) throw new Refused(`vermagic '${info.vermagic}' is not of kernel ${rel}`);
  if (info.vermagic !== manifest.vermagic) throw new Refused(`vermagic '${info.vermagic}' is not the build's '${manifest.vermagic}'`);
  if (manifest.release !== rel || manifest.buildId !== buildId || manifest.sourceDigest !== digest) throw new Refused('built for another kernel or source');
  if (info.version !== String(ABI_VERSION)) throw new Refused(`record ABI ${info.version ?? 'unknown'}, not ${ABI_VERSION}`);
}

const lastLine = (s: string) => s.trim().split('\n').at(-1) ?? '';
