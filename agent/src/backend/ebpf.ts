// The eBPF backend: runs kmod/bpf's loader, reads its stdout (the same items
// as /dev/irqtrace) and talks to it over stdin/stderr: one key=value line per
// setting changed, "stats" for a snapshot, each answered "ok ..." or
// "refused: ...". Its one-line reasons become the backend's errors.
import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { kernelSettings } from '../config/kernel_config.js';
import type { KernelConfig } from '../config/kernel_config.js';
import type { CountersItem, HistItem } from '../records/decode.js';
import { ItemStreamDecoder } from '../records/stream.js';
import { BackendError } from './types.js';
import type { BackendSink, KernelBackend, Stats } from './types.js';

export interface EbpfOptions {
  /** The loader binary; default $IRQTRACE_BPF_LOADER, then /usr/lib/irqtrace/irqtrace-bpf. */
  loaderPath?: string;
  /** How long to wait for the loader to attach (BPF verification is slow under emulation). */
  startTimeoutMs?: number;
}

type Loader = ChildProcessByStdio<Writable, Readable, Readable>;

const PREFIX = 'irqtrace-bpf: ';

export class EbpfBackend implements KernelBackend {
  readonly name = 'ebpf';
  private child: Loader | undefined;
  private exited: Promise<number> | undefined;
  private applied: Record<string, string> = {};
  private currentMethod = 'unknown';
  /** Answers ("ok ..." / "refused: ...") in the order the lines were sent. */
  private waiting: ((answer: string) => void)[] = [];
  private statsItems: (CountersItem | HistItem)[] = [];
  private statsWanted: { count: number; done: () => void } | undefined;
  private lastLine = '';

  constructor(private readonly options: EbpfOptions = {}) {}

  private async loaderPath(): Promise<string> {
    const path = this.options.loaderPath ?? process.env.IRQTRACE_BPF_LOADER ?? '/usr/lib/irqtrace/irqtrace-bpf';
    try {
      await access(path);
    } catch {
      throw new BackendError(`no eBPF loader at ${path}`, 'ebpf');
    }
    return path;
  }

  async start(cfg: KernelConfig, sink: BackendSink): Promise<void> {
    const settings = kernelSettings(cfg);
    const path = await this.loaderPath();
    const child: Loader = spawn(path, Object.entries(settings).map(([k, v]) => `${k}=${v}`), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) => child.on('close', (code, signal) => { resolve(code ?? (signal ? 128 : -1)); }));
    child.stdin.on('error', () => { /* the loader exited: its exit reports why */ });

    const decoder = new ItemStreamDecoder();
    child.stdout.on('data', (chunk: Buffer) => {
      try {
        for (const item of decoder.items(chunk)) {
          if (item.type === 'record') sink.record(item);
          else this.statsItems.push(item);
        }
      } catch (err) {
        sink.failed(err as Error);
        child.kill('SIGTERM');
        return;
      }
      this.checkStats();
    });

    let attached: (() => void) | undefined;
    const started = new Promise<void>((resolve) => (attached = resolve));
    createInterface({ input: child.stderr }).on('line', (line) => {
      if (!line.startsWith(PREFIX)) return;
      const text = line.slice(PREFIX.length);
      this.lastLine = text;
      const tracing = /^tracing: method=(\S+)/.exec(text);
      if (tracing?.[1]) {
        this.currentMethod = tracing[1];
        attached?.();
      } else if (/^(ok|refused)/.test(text)) {
        const ok = /^ok method=(\S+)/.exec(text);
        if (ok?.[1]) this.currentMethod = ok[1];
        this.waiting.shift()?.(text);
      }
    });

    const timeout = this.options.startTimeoutMs ?? 300_000;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      started.then(() => 'attached' as const),
      this.exited.then((code) => ({ code })),
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => { resolve('timeout'); }, timeout))),
    ]);
    clearTimeout(timer);
    if (outcome === 'attached') {
      this.applied = settings;
      this.exited.then((code) => { if (this.child === child) sink.failed(new BackendError(`the eBPF loader exited (${code}): ${this.lastLine}`, 'ebpf')); }).catch(() => {});
      return;
    }
    this.child = undefined;
    if (outcome === 'timeout') {
      child.kill('SIGKILL');
      throw new BackendError(`the eBPF loader did not attach within ${timeout} ms`, 'ebpf');
    }
    throw new BackendError(this.lastLine || `the eBPF loader exited with ${outcome.code}`, 'ebpf');
  }

  /** Sends one line; resolves with the loader's answer. */
  private send(line: string): Promise<string> {
    const child = this.child;
    if (!child) return Promise.reject(new BackendError('the eBPF loader is not running', 'ebpf'));
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      child.stdin.write(`${line}\n`);
    });
  }

  async apply(cfg: KernelConfig): Promise<void> {
    for (const [name, value] of Object.entries(kernelSettings(cfg))) {
      if (this.applied[name] === value) continue;
      const answer = await this.send(`${name}=${value}`);
      if (answer.startsWith('refused')) throw new BackendError(answer.replace(/^refused: /, ''), 'ebpf');
      this.applied[name] = value;
    }
  }

  private checkStats(): void {
    if (this.statsWanted && this.statsItems.length >= this.statsWanted.count) this.statsWanted.done();
  }

  async stats(): Promise<Stats> {
    this.statsItems = [];
    const answer = await this.send('stats');
    const count = Number(/items=(\d+)/.exec(answer)?.[1] ?? 0);
    // stderr and stdout are separate pipes: the items may still be on their way.
    await new Promise<void>((resolve) => {
      this.statsWanted = { count, done: resolve };
      this.checkStats();
    });
    this.statsWanted = undefined;
    const items = this.statsItems.splice(0);
    return {
      counters: items.filter((i): i is CountersItem => i.type === 'counters'),
      hists: items.filter((i): i is HistItem => i.type === 'hist'),
    };
  }

  method(): Promise<string> {
    return Promise.resolve(this.currentMethod);
  }

  async clear(): Promise<void> {
    const answer = await this.send('clear');
    if (!answer.startsWith('ok')) throw new BackendError(`clear: ${answer}`, 'ebpf');
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([this.exited, new Promise<'late'>((r) => (timer = setTimeout(() => { r('late'); }, 15_000)))]);
    // A pending timer would keep an agent that is exiting alive for the rest of the 15 s.
    clearTimeout(timer);
    if (code === 'late') {
      child.kill('SIGKILL');
      throw new BackendError('the eBPF loader did not stop within 15 s of SIGTERM; killed', 'ebpf');
    }
    if (code !== 0) throw new BackendError(`the eBPF loader exited ${code} at stop: ${this.lastLine}`, 'ebpf');
  }
}
