// Prometheus metrics of the node agent, and its /metrics, /healthz and
// /readyz endpoints.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { irqtrace } from '@irqtrace/proto';
import { CountedHistogram } from './counted_histogram.js';
import { KernelHistograms } from './kernel_histograms.js';
import type { PipelineCounters } from '../pipeline/record_pipeline.js';
import { AGENT_LOSSES } from '../pipeline/batcher.js';
import { KIND_NAMES } from '../cli/format.js';
import { Kind } from '../records/layout.js';

const KINDS = [Kind.IrqsOff, Kind.SoftirqsOff, Kind.IrqLine];

export class AgentMetrics {
  readonly registry = new Registry();
  /** Counted by the pipeline in plain numbers (per record, a labelled inc() costs more than the rest of the count), read at scrape time. */
  private readonly sectionCounts: Record<'received' | 'filtered' | 'batched', number[]> = { received: [], filtered: [], batched: [] };
  readonly sections = new Counter({
    name: 'irqtrace_sections_total',
    help: 'Sections over the threshold, by kind and stage reached (received, filtered, batched)',
    labelNames: ['kind', 'stage'],
    registers: [this.registry],
    collect: () => { this.collectSections(); },
  });
  readonly kernelSeen = new Gauge({ name: 'irqtrace_kernel_sections_seen', help: 'Sections the kernel side measured (all, under the threshold too), by CPU', labelNames: ['cpu'], registers: [this.registry] });
  readonly kernelIdleExcluded = new Gauge({
    name: 'irqtrace_kernel_idle_excluded',
    help: "Sections the kernel side left out as the idle loop's (no handler held them), by CPU",
    labelNames: ['cpu'],
    registers: [this.registry],
  });
  readonly hypervisor = new Counter({
    name: 'irqtrace_hypervisor_sections_total',
    help: "Sections over the threshold that were the host's: the vCPU's steal clock ran for at least half of each (in irqtrace_sections_total, not in irqtrace_section_duration_seconds)",
    registers: [this.registry],
  });
  readonly dropped = new Counter({ name: 'irqtrace_dropped_total', help: 'Sections or events lost, by stage', labelNames: ['stage'], registers: [this.registry] });
  readonly duration = new CountedHistogram(
    'irqtrace_section_duration_seconds',
    'Durations of the sections over the threshold, by kind',
    'kind',
    [1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1, 1],
    this.registry,
  );
  readonly kernelDurations = new KernelHistograms(
    'irqtrace_kernel_section_duration_seconds',
    "Durations of every section the kernel side measured, under the threshold too, by kind: its log2 histograms summed over CPUs and IRQ lines (bounds 2^n ns, exact there); host stalls the steal clock marked are not in it",
    this.registry,
  );
  readonly backend = new Gauge({ name: 'irqtrace_backend_info', help: '1 for the backend, method and phase in effect', labelNames: ['backend', 'method', 'phase'], registers: [this.registry] });
  /** Read at scrape time: batches leave the outbox on acks, which the metrics do not see. */
  unackedBatches: () => number = () => 0;
  readonly unacked = new Gauge({
    name: 'irqtrace_unacked_batches',
    help: 'Batches not yet acknowledged by the ingest',
    registers: [this.registry],
    collect: () => { this.unacked.set(this.unackedBatches()); },
  });
  readonly connected = new Gauge({ name: 'irqtrace_ingest_connected', help: '1 while the ingest stream is up', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'irqtrace_agent_' });
  }

  private collectSections(): void {
    this.sections.reset();
    for (const [stage, counts] of Object.entries(this.sectionCounts)) {
      for (const kind of KINDS) this.sections.inc({ kind: KIND_NAMES[kind], stage }, counts[kind] ?? 0);
    }
  }

  /** The record pipeline's counts. The histogram's series are looked up once, not per record. */
  pipelineCounters(): PipelineCounters {
    // Indexed by Kind, as the counts are.
    const durations = [undefined, ...KINDS.map((kind) => this.duration.observer(KIND_NAMES[kind]))];
    const { received, filtered, batched } = this.sectionCounts;
    return {
      received: (kind) => { received[kind] = (received[kind] ?? 0) + 1; },
      filtered: (kind) => { filtered[kind] = (filtered[kind] ?? 0) + 1; },
      emitted: (kind, durationNs, hypervisor) => {
        batched[kind] = (batched[kind] ?? 0) + 1;
        // The host's stall is no section's length on this machine.
        if (hypervisor) this.hypervisor.inc();
        else durations[kind]?.(Number(durationNs) / 1e9);
      },
    };
  }

  /** A loss as a batch carries it (so the metric and the status's lost add up the same). */
  countLoss(stage: irqtrace.v1.LossStage, count: bigint, reason: string): void {
    this.dropped.inc({ stage: lossLabel(stage, reason) }, Number(count));
  }

  setBackend(backend: string, method: string, phase: string): void {
    this.backend.reset();
    this.backend.set({ backend, method, phase }, 1);
  }
}

const LOSS_STAGES: Partial<Record<irqtrace.v1.LossStage, string>> = {
  [irqtrace.v1.LossStage.LOSS_STAGE_KERNEL_RING]: 'kernel_ring',
  [irqtrace.v1.LossStage.LOSS_STAGE_KERNEL_GUARD]: 'kernel_guard',
};

/** The metric's stage label: the kernel's stages by name, the agent's queues by which one filled. */
function lossLabel(stage: irqtrace.v1.LossStage, reason: string): string {
  const known = LOSS_STAGES[stage];
  if (known) return known;
  if (stage !== irqtrace.v1.LossStage.LOSS_STAGE_AGENT_QUEUE) return 'other';
  return Object.values(AGENT_LOSSES).find((l) => l.reason === reason)?.label ?? 'agent_queue';
}

/** /metrics always; /healthz while the process runs; /readyz when ready() says so. */
export async function serveMetrics(metrics: AgentMetrics, port: number, ready: () => { ok: boolean; why: string }, host = '127.0.0.1'): Promise<Server> {
  const server = createServer((req, res) => {
    void (async () => {
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(await metrics.registry.metrics());
      } else if (req.url === '/healthz') {
        res.writeHead(200).end('ok\n');
      } else if (req.url === '/readyz') {
        const r = ready();
        res.writeHead(r.ok ? 200 : 503).end(`${r.ok ? 'ready' : r.why}\n`);
      } else {
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return server;
}
