// Events into EventBatches: a batch closes at maxEvents or maxDelayMs after
// its first event, gets the node's next seq, and goes to the outbox. Losses
// (the kernel's drop counters, the agent's own) and histogram snapshots ride
// along in the next batch; a batch with only those is sent too.
import { TAGS, irqtrace, toLong } from '@irqtrace/proto';
import { writeEventField } from './encode.js';
import { WireWriter } from './wire.js';
import type { Outbox } from '../transport/outbox.js';

export interface BatcherOptions {
  maxEvents?: number;
  maxDelayMs?: number;
  /** Events waiting for a batch beyond this are dropped and counted. */
  maxPending?: number;
  /** Called after each batch is in the outbox (the client sends it). */
  onBatch?: (seq: bigint) => void;
  /** Called for every loss a batch will carry, as it is counted (the agent's metrics). */
  onLoss?: (stage: irqtrace.v1.LossStage, count: bigint, reason: string) => void;
}

/** The agent's own losses, by the queue that was full: the Loss's reason and the metric's stage label. */
export const AGENT_LOSSES = {
  attribution: { reason: 'agent attribution queue full', label: 'agent_attribution' },
  batcher: { reason: 'agent batcher full', label: 'agent_batcher' },
  spool: { reason: 'spool full: oldest batches dropped', label: 'agent_spool' },
} as const;

export class Batcher {
  /** The batch's events, encoded as they come (EventBatch.events each). */
  private readonly events = new WireWriter(256 * 1024);
  private count = 0;
  private losses: irqtrace.v1.ILoss[] = [];
  private histograms: irqtrace.v1.IHistogramSnapshot | undefined;
  private state: irqtrace.v1.IBackendState | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly maxEvents: number;
  private readonly maxDelayMs: number;
  private readonly maxPending: number;
  /** Events dropped because the batcher was full. */
  dropped = 0;
  batches = 0;

  constructor(
    private readonly outbox: Outbox,
    private readonly options: BatcherOptions = {},
  ) {
    this.maxEvents = options.maxEvents ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 200;
    this.maxPending = options.maxPending ?? 10 * this.maxEvents;
  }

  add(event: irqtrace.v1.IEvent): void {
    if (this.count >= this.maxPending) {
      this.dropped++;
      this.loss(irqtrace.v1.LossStage.LOSS_STAGE_AGENT_QUEUE, 1, AGENT_LOSSES.batcher.reason);
      return;
    }
    writeEventField(this.events, TAGS.EventBatch.events, event);
    this.count++;
    if (this.count >= this.maxEvents) this.flush();
    else this.timer ??= setTimeout(() => { this.flush(); }, this.maxDelayMs);
  }

  /** Counts a loss; the same stage, CPU and reason add up within a batch. */
  loss(stage: irqtrace.v1.LossStage, count: number | bigint, reason: string, cpu?: number): void {
    if (count === 0 || count === 0n) return;
    this.addLoss(stage, BigInt(count), reason, cpu);
    this.timer ??= setTimeout(() => { this.flush(); }, this.maxDelayMs);
  }

  /** Into the current batch, and to onLoss: the one place a loss is recorded. */
  private addLoss(stage: irqtrace.v1.LossStage, count: bigint, reason: string, cpu?: number): void {
    this.options.onLoss?.(stage, count, reason);
    const same = this.losses.find((l) => l.stage === stage && l.reason === reason && l.cpu === cpu);
    if (same) same.count = toLong(BigInt(same.count?.toString() ?? '0') + count);
    else this.losses.push({ stage, count: toLong(count), reason, ...(cpu === undefined ? {} : { cpu }) });
  }

  snapshot(histograms: irqtrace.v1.IHistogramSnapshot, state?: irqtrace.v1.IBackendState): void {
    this.histograms = histograms;
    if (state) this.state = state;
    this.flush();
  }

  /** Closes the current batch now (if it has anything). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const outboxLoss = this.outbox.takeLoss();
    if (outboxLoss) this.addLoss(irqtrace.v1.LossStage.LOSS_STAGE_AGENT_QUEUE, BigInt(outboxLoss), AGENT_LOSSES.spool.reason);
    if (!this.count && !this.losses.length && !this.histograms && !this.state) return;
    const seq = this.outbox.nextSeq();
    const tags = TAGS.EventBatch;
    const events = this.events.finish();
    const w = new WireWriter(events.length + 4096);
    w.tag(tags.seq).uint64(toLong(seq));
    w.tag(tags.sentUnixNs).uint64(toLong(BigInt(Date.now()) * 1_000_000n));
    w.raw(events);
    for (const l of this.losses) w.tag(tags.losses).bytes(irqtrace.v1.Loss.encode(l).finish());
    if (this.histograms) w.tag(tags.histograms).bytes(irqtrace.v1.HistogramSnapshot.encode(this.histograms).finish());
    if (this.state) w.tag(tags.state).bytes(irqtrace.v1.BackendState.encode(this.state).finish());
    const count = this.count;
    this.count = 0;
    this.losses = [];
    this.histograms = undefined;
    this.state = undefined;
    this.outbox.addEncoded(seq, w.finish(), count);
    this.batches++;
    this.options.onBatch?.(seq);
  }

  stop(): void {
    this.flush();
  }
}
