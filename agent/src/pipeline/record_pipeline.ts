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
import type { PodNames } from '../attribution/pod_names.js';
import type { ProcFs } from '../attribution/procfs.js';
import { TaskAttributor } from '../attribution/tasks.js';
import { TraceTimeline } from '../config/trace_timeline.js';
import type { Trace } from '../config/traces.js';
import type { SectionRecord } from '../records/decode.js';
import { Context, Kind } from '../records/layout.js';
import { parseInterrupts } from '../config/irq_names.js';
import type { InterruptLine } from '../config/irq_names.js';
import { SymbolSource } from '../symbols/source.js';
import { SerialQueue } from './serial_queue.js';
import { toEvent } from './event.js';
import { ContextNamer } from './context.js';

/** Where the pipeline's counts go (the agent's Prometheus metrics, or nothing). */
export interface PipelineCounters {
  /** A record over the threshold arrived. */
  received(kind: Kind): void;
  /** No trace wanted it. */
  filtered(kind: Kind): void;
  /** It became an event; hypervisor: the host's (the steal clock says), not a section of this machine's code. */
  emitted(kind: Kind, durationNs: bigint, hypervisor: boolean): void;
}

export interface RecordPipelineOptions {
  proc: ProcFs;
  cgroups?: CgroupIndex;
  /** Pod names on a kubelet node (pods keep their UIDs without). */
  pods?: PodNames;
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
const NO_LINES: ReadonlyMap<number, InterruptLine> = new Map();
/** /proc/interrupts is read again for an IRQ it did not name after this long (lines come and go with devices). */
const INTERRUPTS_MAX_AGE_MS = 10_000;

export class RecordPipeline {
  readonly symbols: SymbolSource;
  readonly tasks: TaskAttributor;
  private readonly offenders: OffenderEnricher;
  private readonly queue: SerialQueue<SectionRecord>;
  private readonly timeline = new TraceTimeline();
  private readonly contexts = new ContextNamer();
  /** IRQ numbers to their action names, from /proc/interrupts, and when it was read. */
  private interrupts: { lines: ReadonlyMap<number, InterruptLine>; readAt: number } = { lines: NO_LINES, readAt: 0 };
  /** Records lost because the queue was full. */
  dropped = 0;

  get proc(): ProcFs {
    return this.o.proc;
  }

  constructor(private readonly o: RecordPipelineOptions) {
    this.symbols = new SymbolSource(o.proc);
    this.tasks = new TaskAttributor(o.proc, {}, o.cgroups, o.pods);
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
    const lines = this.interruptLines(rec);
    if (task === undefined || enablingTask === undefined || enrichment === undefined || lines === undefined) return this.slow(rec, traces);
    this.emit(rec, traces, lines, task.value, enablingTask?.value, enrichment?.value);
  }

  private async slow(rec: SectionRecord, traces: string[]): Promise<void> {
    const task = await this.tasks.attribute(rec.pid, rec.cgroupId);
    const enablingTask = rec.enablePid ? await this.tasks.attribute(rec.enablePid) : undefined;
    const enrichment = this.o.enrich === false ? undefined : await this.offenders.enrich(rec.pid);
    const lines = this.interruptLines(rec) ?? (await this.readInterrupts());
    this.emit(rec, traces, lines, task, enablingTask, enrichment);
  }

  /** The IRQ names a handler's record needs, when known well enough; undefined: read /proc/interrupts first. */
  private interruptLines(rec: SectionRecord): ReadonlyMap<number, InterruptLine> | undefined {
    if (rec.context !== Context.Hardirq) return NO_LINES;
    const { lines, readAt } = this.interrupts;
    return lines.has(rec.contextNr) || Date.now() - readAt < INTERRUPTS_MAX_AGE_MS ? lines : undefined;
  }

  private async readInterrupts(): Promise<ReadonlyMap<number, InterruptLine>> {
    const text = (await this.o.proc.read('interrupts')) ?? '';
    const lines = new Map(parseInterrupts(text).map((l) => [l.irq, l] as const));
    this.interrupts = { lines, readAt: Date.now() };
    return lines;
  }

  private emit(rec: SectionRecord, traces: string[], lines: ReadonlyMap<number, InterruptLine>, task?: CgroupAttribution, enablingTask?: CgroupAttribution, enrichment?: Enrichment): void {
    const context = this.contexts.of(rec, this.symbols.symbols, lines);
    const event = toEvent(rec, this.symbols.symbols, { task, enablingTask, enrichment, context });
    // Shared by the events the same traces want: not changed downstream.
    if (traces.length) event.traces = traces;
    this.o.counters?.emitted(rec.kind, rec.durationNs, event.hypervisor === true);
    this.o.onEvent(event, rec, task ? { task } : {});
  }
}
