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
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { kernelSettings } from '../config/kernel_config.js';
import type { KernelConfig } from '../config/kernel_config.js';
import { decodeAll } from '../records/decode.js';
import type { CountersItem, HistItem } from '../records/decode.js';
import { Method } from '../records/layout.js';
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
  kernelRelease?: string;
  sysRoot?: string;
  devRoot?: string;
  modulesRoot?: string;
  exec?: Exec;
}

const READ_BYTES = 256 * 1024;
const openFd = promisify(open);
const readFd = promisify(read);
const closeFd = promisify(close);

/** The irqs-off method the counters say runs (the same in every CPU's item). */
export function runningMethod(counters: readonly CountersItem[]): string {
  const m = counters[0]?.irqsOffMethod;
  return m === Method.Exact ? 'exact' : m === Method.Sampled ? 'sampled' : counters.length ? 'off' : 'unknown';
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

  constructor(private readonly options: KmodOptions = {}) {
    this.sys = options.sysRoot ?? '/sys';
    this.dev = options.devRoot ?? '/dev';
    this.exec = options.exec ?? defaultExec;
  }

  private param(name: string): string {
    return join(this.sys, 'module', 'irqtrace', 'parameters', name);
  }

  /** A module for this kernel: given, prebuilt for its release, or built from source. */
  private async findModule(): Promise<string> {
    const rel = this.options.kernelRelease ?? release();
    if (this.options.modulePath) {
      if (!(await exists(this.options.modulePath))) throw new BackendError(`no module at ${this.options.modulePath}`, 'kmod');
      return this.options.modulePath;
    }
    if (this.options.moduleDir) {
      const prebuilt = join(this.options.moduleDir, rel, 'irqtrace.ko');
      if (await exists(prebuilt)) return prebuilt;
    }
    const source = this.options.sourceDir;
    const build = join(this.options.modulesRoot ?? '/lib/modules', rel, 'build');
    if (!source) throw new BackendError(`no prebuilt irqtrace.ko for kernel ${rel} and no module source to build one`, 'kmod');
    if (!(await exists(join(build, 'Makefile')))) {
      throw new BackendError(`no prebuilt irqtrace.ko for kernel ${rel}, and no kernel headers at ${build} to build one`, 'kmod');
    }
    const dir = await mkdtemp(join(tmpdir(), 'irqtrace-kmod-'));
    await cp(source, dir, { recursive: true, filter: (src) => !['test', 'bpf', 'selftest'].includes(relative(source, src).split(sep)[0] ?? '') });
    const made = await this.exec('make', ['-C', build, `M=${dir}`, 'modules'], { timeoutMs: 900_000 });
    if (made.code !== 0) {
      const why = made.stderr.trim().split('\n').filter((l) => /error/i.test(l)).at(0) ?? made.stderr.trim().split('\n').at(-1) ?? '';
      throw new BackendError(`building irqtrace.ko against ${build} failed: ${why}`, 'kmod');
    }
    return join(dir, 'irqtrace.ko');
  }

  async start(cfg: KernelConfig, sink: BackendSink): Promise<void> {
    const settings = kernelSettings(cfg);
    if (await exists(join(this.sys, 'module', 'irqtrace'))) {
      // Loaded already (by an earlier agent, or by hand): adopt it, leave it loaded at stop.
      await this.apply(cfg);
    } else {
      const ko = await this.findModule();
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
      const busy = (err as NodeJS.ErrnoException).code === 'EBUSY';
      throw new BackendError(busy ? '/dev/irqtrace has a reader already (another agent?)' : `cannot open /dev/irqtrace: ${String(err)}`, 'kmod', { cause: err });
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
    const settings = kernelSettings(cfg);
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
    // The close wakes the read blocked in the kernel (->flush); then the loop ends.
    if (device !== undefined) await closeFd(device);
    await this.reading;
    if (this.loadedByUs) {
      const r = await this.exec('rmmod', ['irqtrace'], { timeoutMs: 120_000 });
      if (r.code !== 0) throw new BackendError(`rmmod irqtrace: ${r.stderr.trim()}`, 'kmod');
      this.loadedByUs = false;
    }
  }
}
