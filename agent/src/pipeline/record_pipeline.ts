// Kernel records to events, one at a time and in order: which traces want the
// record, who did it (task, cgroup, pod; the offender's files and sockets),
// symbolized sites and stack. The node agent, `irqtrace record` and the
// benchmark all run this one path. Attribution is asynchronous (it reads
// /proc) but cached, so the usual record finishes without waiting.
import type { irqtrace } from '@irqtrace/proto';
import { OffenderEnricher } from '../attribution/enrich.js';
import type { Enrichment } from '../attribution/enrich.js';
import type { CgroupAttribution } from '../attribution/cgroup.js';
import type { CgroupIndex } from '../attribution/cgroup_index.js';
import type { ProcFs } from '../attribution/procfs.js';
import { TaskAttributor } from '../attribution/tasks.js';
import { TraceTimeline } from '../config/trace_timeline.js';
import type { Trace } from '../config/traces.js';
import type { SectionRecord } from '../records/decode.js';
import { Kind } from '../records/layout.js';
import { SymbolSource } from '../symbols/source.js';
import { SerialQueue } from './serial_queue.js';
import { toEvent } from './event.js';

/** Where the pipeline's counts go (the agent's Prometheus metrics, or nothing). */
export interface PipelineCounters {
  /** A record over the threshold arrived. */
  received(kind: Kind): void;
  /** No trace wanted it. */
  filtered(kind: Kind): void;
  /** It became an event. */
  emitted(kind: Kind, durationNs: bigint): void;
}

export interface RecordPipelineOptions {
  proc: ProcFs;
  cgroups?: CgroupIndex;
  /** Open files, sockets and locks of the offender (default on). */
  enrich?: boolean;
  /** Every record is an event (the CLI: the kernel applied the threshold); else the traces decide. */
  allRecords?: boolean;
  counters?: PipelineCounters;
  maxQueued?: number;
  /** Each event, with the record it came from. */
  onEvent: (event: irqtrace.v1.IEvent, rec: SectionRecord, who: { task?: CgroupAttribution }) => void;
  onError: (err: unknown) => void;
}

const NO_TRACES: string[] = [];

export class RecordPipeline {
  readonly symbols: SymbolSource;
  readonly tasks: TaskAttributor;
  private readonly offenders: OffenderEnricher;
  private readonly queue: SerialQueue<SectionRecord>;
  private readonly timeline = new TraceTimeline();
  /** Records lost because the queue was full. */
  dropped = 0;

  get proc(): ProcFs {
    return this.o.proc;
  }

  constructor(private readonly o: RecordPipelineOptions) {
    this.symbols = new SymbolSource(o.proc);
    this.tasks = new TaskAttributor(o.proc, {}, o.cgroups);
    this.offenders = new OffenderEnricher(o.proc);
    this.queue = new SerialQueue((rec) => this.process(rec), o.onError, o.maxQueued);
  }

  /** Takes a record; false when it was dropped (queue full), counted in `dropped` (the caller reports the loss). */
  push(rec: SectionRecord): boolean {
    this.o.counters?.received(rec.kind);
    if (this.queue.push(rec)) return true;
    this.dropped++;
    return false;
  }

  /** The traces events are for now. */
  get traces(): readonly Trace[] {
    return this.timeline.current;
  }

  /**
   * The traces events are for from now on (CLOCK_MONOTONIC, the records' clock): records of
   * sections that ended before are still judged by the traces then, among those that remain.
   */
  setTraces(traces: readonly Trace[], sinceNs = process.hrtime.bigint()): void {
    this.timeline.set(traces, sinceNs);
  }

  get queued(): number {
    return this.queue.pending;
  }

  /** Resolves when every record pushed so far is processed. */
  drained(): Promise<void> {
    return this.queue.drained();
  }

  private process(rec: SectionRecord): Promise<void> | void {
    const traces = this.o.allRecords ? NO_TRACES : this.timeline.match(rec);
    if (!this.o.allRecords && !traces.length) {
      this.o.counters?.filtered(rec.kind);
      return;
    }
    // The cache answers most records at once; only a miss waits for /proc.
    const task = this.tasks.cached(rec.pid);
    const enablingTask = rec.enablePid ? this.tasks.cached(rec.enablePid) : null;
    const enrichment = this.o.enrich === false ? null : this.offenders.cached(rec.pid);
    if (task === undefined || enablingTask === undefined || enrichment === undefined) return this.slow(rec, traces);
    this.emit(rec, traces, task.value, enablingTask?.value, enrichment?.value);
  }

  private async slow(rec: SectionRecord, traces: string[]): Promise<void> {
    const task = await this.tasks.attribute(rec.pid, rec.cgroupId);
    const enablingTask = rec.enablePid ? await this.tasks.attribute(rec.enablePid) : undefined;
    const enrichment = this.o.enrich === false ? undefined : await this.offenders.enrich(rec.pid);
    this.emit(rec, traces, task, enablingTask, enrichment);
  }

  private emit(rec: SectionRecord, traces: string[], task?: CgroupAttribution, enablingTask?: CgroupAttribution, enrichment?: Enrichment): void {
    const event = toEvent(rec, this.symbols.symbols, { task, enablingTask, enrichment });
    // Shared by the events the same traces want: not changed downstream.
    if (traces.length) event.traces = traces;
    this.o.counters?.emitted(rec.kind, rec.durationNs);
    this.o.onEvent(event, rec, task ? { task } : {});
  }
}
