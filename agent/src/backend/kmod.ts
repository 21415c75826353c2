// The kernel module backend: finds irqtrace.ko for the running kernel (a
// prebuilt one, or builds it from the shipped source against the node's
// headers, as node agents do), loads it with the configuration as module
// parameters, reads /dev/irqtrace, and changes parameters through sysfs.
//
// Reads block in the kernel until records come (the module wakes its reader
// from an irq_work), each in a thread of libuv's pool: nothing polls. To stop,
// the device is closed; the module's ->flush wakes the blocked read, which
// returns 0.
import { close, constants, open, read } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { METHOD_NAMES, kernelSettings } from '../config/kernel_config.js';
import type { KernelConfig } from '../config/kernel_config.js';
import { BuildError, buildModule, linkHostKbuild } from '../driver/build.js';
import { modulesDisabled } from '../driver/refusals.js';
import { readDriverState } from '../driver/state.js';
import { decodeAll } from '../records/decode.js';
import type { CountersItem, HistItem } from '../records/decode.js';
import { ItemStreamDecoder } from '../records/stream.js';
import { exists } from '../util/fs.js';
import { exec as defaultExec } from './exec.js';
import type { Exec } from './exec.js';
import { BackendError } from './types.js';
import type { BackendSink, KernelBackend, Stats } from './types.js';

export interface KmodOptions {
  /** A prebuilt irqtrace.ko to load as is. */
  modulePath?: string;
  /** Prebuilt modules as <dir>/<uname -r>/irqtrace.ko. */
  moduleDir?: string;
  /** The module's source (kmod/), built when no prebuilt one matches. */
  sourceDir?: string;
  /**
   * The driver loader's state file (`irqtrace driver load`, the pod's init
   * container): the module file it checked (or found loaded), or why there is none. The
   * agent then builds nothing, and owns the module: it unloads it at stop.
   */
  driverState?: string;
  kernelRelease?: string;
  sysRoot?: string;
  devRoot?: string;
  procRoot?: string;
  modulesRoot?: string;
  /** The host's /usr/lib as mounted here, for Debian's headers (linked to its linux-kbuild-<version>). */
  hostUsrLib?: string;
  usrLib?: string;
  exec?: Exec;
}

const READ_BYTES = 256 * 1024;
/** The module's parameters for measuring nothing (its context probes detach too). */
const IDLE_SETTINGS: Record<string, string> = { method: 'off', softirqs: '0', irqs: 'none' };
const openFd = promisify(open);
const readFd = promisify(read);
const closeFd = promisify(close);

/** The irqs-off method the counters say runs (the same in every CPU's item). */
export function runningMethod(counters: readonly CountersItem[]): string {
  const m = counters[0]?.irqsOffMethod;
  return m !== undefined ? METHOD_NAMES[m] : counters.length ? 'off' : 'unknown';
}

/** The module file the driver loader checked (null: it only found one loaded), or its reason for none. */
async function driverModule(path: string): Promise<string | null> {
  const state = await readDriverState(path);
  if (!state) throw new BackendError(`no driver state at ${path}: the driver loader did not run`, 'kmod');
  if (!state.ok) throw new BackendError(state.reason, 'kmod');
  return state.module;
}

/** A module for this kernel: given, prebuilt for its release, or built from source. */
export async function findModule(options: KmodOptions, run: Exec = defaultExec): Promise<string> {
  const rel = options.kernelRelease ?? release();
  if (options.modulePath) {
    if (!(await exists(options.modulePath))) throw new BackendError(`no module at ${options.modulePath}`, 'kmod');
    return options.modulePath;
  }
  if (options.moduleDir) {
    const prebuilt = join(options.moduleDir, rel, 'irqtrace.ko');
    if (await exists(prebuilt)) return prebuilt;
  }
  const source = options.sourceDir;
  if (!source) throw new BackendError(`no prebuilt irqtrace.ko for kernel ${rel} and no module source to build one`, 'kmod');
  try {
    if (options.hostUsrLib) await linkHostKbuild(options.hostUsrLib, options.usrLib ?? '/usr/lib');
    return await buildModule(source, join(options.modulesRoot ?? '/lib/modules', rel, 'build'), run);
  } catch (err) {
    if (err instanceof BuildError) throw new BackendError(`no prebuilt irqtrace.ko for kernel ${rel}, and ${err.message}`, 'kmod');
    throw err;
  }
}

/** Unloads the module; a refusal (in use: a reader holds it open) is a BackendError saying rmmod's reason. */
async function rmmod(exec: Exec): Promise<void> {
  const r = await exec('rmmod', ['irqtrace'], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new BackendError(`rmmod irqtrace: ${r.stderr.trim() || `exit ${r.code}`}`, 'kmod');
}

/**
 * The module an agent of this pod left loaded when it was killed, unloaded now that no trace
 * wants it: killed, that agent could not, and a module outlives its agent. Only where the pod
 * owns the node's module (the driver loader ran: driverState); a module loaded by hand, beside an
 * agent without the loader, is left alone. Returns whether there was one; throws when rmmod fails.
 */
export async function unloadLeftover(options: KmodOptions = {}): Promise<boolean> {
  if (options.driverState === undefined) return false;
  if (!(await exists(join(options.sysRoot ?? '/sys', 'module', 'irqtrace')))) return false;
  await rmmod(options.exec ?? defaultExec);
  return true;
}

/**
 * The module's steal clock: the per-CPU offset of a KVM guest's struct kvm_steal_time, the
 * steal_time symbol in kallsyms (a module cannot look symbols up). With it a sampled section that
 * is mostly steal is marked as the hypervisor's. None (not a KVM guest, or kallsyms hides its
 * addresses): no setting.
 */
export async function stealClockSetting(procRoot = '/proc'): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(join(procRoot, 'kallsyms'), 'utf8');
  } catch {
    return {};
  }
  const offset = BigInt(`0x${/^([0-9a-f]+) \w steal_time$/m.exec(text)?.[1] ?? '0'}`);
  return offset ? { steal_time_offset: offset.toString() } : {};
}

export class KmodBackend implements KernelBackend {
  readonly name = 'kmod';
  private readonly sys: string;
  private readonly dev: string;
  private readonly exec: Exec;
  private loadedByUs = false;
  private device: number | undefined;
  private reading: Promise<void> | undefined;
  private stopping = false;
  private applied: Record<string, string> = {};
  private steal: Record<string, string> | undefined;

  constructor(private readonly options: KmodOptions = {}) {
    this.sys = options.sysRoot ?? '/sys';
    this.dev = options.devRoot ?? '/dev';
    this.exec = options.exec ?? defaultExec;
  }

  private param(name: string): string {
    return join(this.sys, 'module', 'irqtrace', 'parameters', name);
  }

  /** The module's parameters for cfg, with this machine's steal clock. */
  private async settings(cfg: KernelConfig): Promise<Record<string, string>> {
    this.steal ??= await stealClockSetting(this.options.procRoot);
    return { ...kernelSettings(cfg), ...this.steal };
  }

  async start(cfg: KernelConfig, sink: BackendSink): Promise<void> {
    const settings = await this.settings(cfg);
    const driver = this.options.driverState !== undefined ? await driverModule(this.options.driverState) : undefined;
    if (await exists(join(this.sys, 'module', 'irqtrace'))) {
      // Loaded already (by an earlier agent, or by hand): adopt it, leave it loaded at stop;
      // unless this agent runs with the driver loader: its pod owns the node's module (one left by
      // an agent that was killed is taken over, and unloaded when this one stops).
      await this.apply(cfg);
      this.loadedByUs = !!this.options.driverState;
    } else {
      // Checked first: building the module takes minutes, and insmod would only say EPERM.
      const disabled = await modulesDisabled(this.options.procRoot);
      if (disabled) throw new BackendError(disabled, 'kmod');
      if (driver === null) throw new BackendError('the module the driver loader found loaded is gone, and it checked no file to load again', 'kmod');
      const ko = driver ?? (await findModule(this.options, this.exec));
      const args = Object.entries(settings).map(([k, v]) => `${k}=${v}`);
      const r = await this.exec('insmod', [ko, ...args], { timeoutMs: 120_000 });
      if (r.code !== 0) {
        const why = r.stderr.trim().split('\n').at(-1) ?? `exit ${r.code}`;
        throw new BackendError(`insmod ${ko}: ${why.replace(/^insmod: (ERROR: )?/, '')}`, 'kmod');
      }
      this.loadedByUs = true;
      this.applied = settings;
    }
    try {
      this.device = await openFd(join(this.dev, 'irqtrace'), constants.O_RDONLY);
    } catch (err) {
      await this.stop();
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'EBUSY'
        ? `${this.dev}/irqtrace has a reader already (another agent?)`
        // A container's /dev is made when it starts, before the module made its device.
        : code === 'ENOENT' ? `loaded, but no ${this.dev}/irqtrace: in a container, mount the host's /dev and pass --dev` : `cannot open ${this.dev}/irqtrace: ${String(err)}`;
      throw new BackendError(why, 'kmod', { cause: err });
    }
    this.reading = this.readLoop(this.device, sink);
  }

  private async readLoop(device: number, sink: BackendSink): Promise<void> {
    const decoder = new ItemStreamDecoder();
    const buf = Buffer.alloc(READ_BYTES);
    while (!this.stopping) {
      let n: number;
      try {
        // Blocks until records come, or the device is closed (0).
        n = (await readFd(device, buf, 0, buf.length, null)).bytesRead;
      } catch (err) {
        if (!this.isStopping()) sink.failed(err as Error);
        return;
      }
      // Closed meanwhile: the descriptor is gone (its number may be another file's by now).
      if (this.isStopping()) return;
      if (n === 0) continue;
      try {
        for (const item of decoder.items(buf.subarray(0, n))) if (item.type === 'record') sink.record(item);
      } catch (err) {
        sink.failed(err as Error);
        return;
      }
    }
  }

  /** A method, not the field: the loop reads it again after each await. */
  private isStopping(): boolean {
    return this.stopping;
  }

  async apply(cfg: KernelConfig): Promise<void> {
    const settings = await this.settings(cfg);
    for (const [name, value] of Object.entries(settings)) {
      if (this.applied[name] === value) continue;
      try {
        await writeFile(this.param(name), value);
      } catch (err) {
        throw new BackendError(`the module refused ${name}=${value} (${(err as NodeJS.ErrnoException).code ?? String(err)}; its reason is in the kernel log)`, 'kmod', { cause: err });
      }
      this.applied[name] = value;
    }
  }

  async stats(): Promise<Stats> {
    const items = decodeAll(await readFile(join(this.dev, 'irqtrace_stats')));
    return {
      counters: items.filter((i): i is CountersItem => i.type === 'counters'),
      hists: items.filter((i): i is HistItem => i.type === 'hist'),
    };
  }

  async method(): Promise<string> {
    return runningMethod((await this.stats()).counters);
  }

  async clear(): Promise<void> {
    await writeFile(join(this.dev, 'irqtrace_stats'), 'clear');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const device = this.device;
    this.device = undefined;
    // The read ends first ("wake": the module's read returns 0, also one queued in the thread
    // pool and not yet started), the descriptor closes after: closed first, its number could be
    // another file's by the time a queued read runs. A module without "wake" is woken by the close.
    const woken = await writeFile(join(this.dev, 'irqtrace_stats'), 'wake').then(() => true, () => false);
    if (woken) await this.reading;
    if (device !== undefined) await closeFd(device);
    await this.reading;
    // A failed rmmod leaves loadedByUs: stop() again tries it again (unless another backend,
    // which adopted the module meanwhile, unloaded it).
    if (this.loadedByUs && (await exists(join(this.sys, 'module', 'irqtrace')))) {
      await this.idle();
      await rmmod(this.exec);
    }
    this.loadedByUs = false;
  }

  /**
   * Nothing measured, before the unload: should rmmod be refused (the module in use), none of its
   * probes runs meanwhile. Best effort: a module that refuses is unloaded all the same.
   */
  private async idle(): Promise<void> {
    for (const [name, value] of Object.entries(IDLE_SETTINGS)) await writeFile(this.param(name), value).catch(() => undefined);
    this.applied = {};
  }
}
