// What a kernel backend (the module, or the eBPF loader) offers the agent.
import type { CountersItem, HistItem, SectionRecord } from '../records/decode.js';
import type { KernelConfig } from '../config/kernel_config.js';

export type BackendName = 'kmod' | 'ebpf';

/** What runs, for the node's reported state. */
export interface BackendState {
  backend: BackendName | 'none';
  /** irqs-off method in use: exact, sampled or off. */
  method: string;
  /** Why nothing (or less than asked) runs; empty when all is well. */
  reason: string;
}

export interface Stats {
  counters: CountersItem[];
  hists: HistItem[];
}

export interface BackendSink {
  record(rec: SectionRecord): void;
  /** The record stream ended abnormally (malformed input, reader error, loader exit). */
  failed(err: Error): void;
}

export interface KernelBackend {
  readonly name: BackendName;
  /** Loads/attaches with cfg; rejects with a BackendError whose message is the one-line reason. */
  start(cfg: KernelConfig, sink: BackendSink): Promise<void>;
  /** Changes the configuration at run time, without losing the stream. */
  apply(cfg: KernelConfig): Promise<void>;
  stats(): Promise<Stats>;
  /** The irqs-off method actually in use. */
  method(): Promise<string>;
  /** Zeroes the histograms and counters. */
  clear(): Promise<void>;
  /** Detaches and unloads what start loaded. */
  stop(): Promise<void>;
}

export class BackendError extends Error {
  constructor(
    message: string,
    readonly backend: BackendName | 'none',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BackendError';
  }
}
