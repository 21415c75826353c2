// Which backend runs: the configured one, or with auto the module first and
// eBPF when the module cannot load (DESIGN.md §2). Every reason a backend
// could not start is kept, so the node's state says why.
import type { BackendChoice, KernelConfig } from '../config/kernel_config.js';
import { EbpfBackend } from './ebpf.js';
import type { EbpfOptions } from './ebpf.js';
import { KmodBackend } from './kmod.js';
import type { KmodOptions } from './kmod.js';
import { BackendError } from './types.js';
import type { BackendSink, BackendState, KernelBackend } from './types.js';

export interface BackendOptions {
  kmod?: KmodOptions;
  ebpf?: EbpfOptions;
}

export interface Started {
  backend: KernelBackend;
  state: BackendState;
}

export async function startBackend(choice: BackendChoice, cfg: KernelConfig, sink: BackendSink, options: BackendOptions = {}): Promise<Started> {
  const candidates: KernelBackend[] =
    choice === 'kmod' ? [new KmodBackend(options.kmod)] : choice === 'ebpf' ? [new EbpfBackend(options.ebpf)] : [new KmodBackend(options.kmod), new EbpfBackend(options.ebpf)];
  const reasons: string[] = [];
  for (const backend of candidates) {
    try {
      await backend.start(cfg, sink);
      const fellBack = reasons.length ? `${reasons.join('; ')}; using ${backend.name}` : '';
      return { backend, state: { backend: backend.name, method: await backend.method(), reason: fellBack } };
    } catch (err) {
      reasons.push(`${backend.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new BackendError(reasons.join('; '), 'none');
}
