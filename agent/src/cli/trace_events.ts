// `irqtrace record --output FILE`: the sections as a Chrome trace-event file, which Perfetto's UI
// (ui.perfetto.dev, trace_processor) and chrome://tracing open. One track per CPU for irqs off and
// one for softirqs off, one per IRQ line; each section a complete slice at its start and length,
// named by who held it, with its ends, sites, lock and stack as arguments.
//
// The JSON array format: it is written as the events come, and a file cut short (the command
// killed) still opens, since that format lets the closing bracket go missing.
import { closeSync, openSync, writeSync } from 'node:fs';
import { irqtrace, toBigInt } from '@irqtrace/proto';
import { formatEnds, formatFrame, formatNs, formatWhere } from './format.js';

const pb = irqtrace.v1;
type IEvent = irqtrace.v1.IEvent;
type IFrame = irqtrace.v1.IFrame;

/** One trace event: a complete slice ('X') or a track's name ('M'). */
export interface TraceEvent {
  name: string;
  ph: 'X' | 'M';
  pid: number;
  tid: number;
  /** Microseconds, as the format has them (fractions keep the nanoseconds). */
  ts?: number;
  dur?: number;
  cat?: string;
  args?: Record<string, unknown>;
}

/** The process each kind of section is drawn under, and what its tracks are. */
const GROUPS = {
  [pb.SectionKind.SECTION_KIND_IRQS_OFF]: { pid: 1, name: 'irqs off', track: (e: IEvent) => ({ tid: e.cpu ?? 0, name: `CPU ${e.cpu ?? 0}` }) },
  [pb.SectionKind.SECTION_KIND_SOFTIRQS_OFF]: { pid: 2, name: 'softirqs off', track: (e: IEvent) => ({ tid: e.cpu ?? 0, name: `CPU ${e.cpu ?? 0}` }) },
  [pb.SectionKind.SECTION_KIND_IRQ_LINE]: { pid: 3, name: 'IRQ lines masked', track: (e: IEvent) => ({ tid: e.irq ?? 0, name: `IRQ ${e.irq ?? 0}` }) },
} as const;

/** A frame of the event as text (formatFrame), undefined when the method knew none. */
function frameText(f: IFrame | null | undefined): string | undefined {
  const address = toBigInt(f?.address);
  if (!f || (!f.symbol && !address)) return undefined;
  return formatFrame({ ...f, address, offset: toBigInt(f.offset) });
}

function taskText(t: irqtrace.v1.ITask | null | undefined): string | undefined {
  return t && (t.comm || t.pid) ? `${t.comm || '?'}/${t.pid ?? 0}` : undefined;
}

/** Who held the section: the host, a handler, or the task (as the CLI's table says). */
function holder(e: IEvent): string {
  if (e.hypervisor) return 'hypervisor (steal)';
  if (e.context?.summary) return e.context.summary;
  return taskText(e.task) ?? '?';
}

/** An edge as text: "lock, exact". */
function edgeText(edge: irqtrace.v1.IEdge | null | undefined): string | undefined {
  if (!edge) return undefined;
  const source = (pb.EdgeSource[edge.source ?? 0] ?? '').replace(/^EDGE_SOURCE_/, '').toLowerCase();
  return `${source}, ${edge.exact ? 'exact' : 'bounded'}`;
}

/** The slice of one section, or undefined for an event of no section kind. */
export function sectionSlice(e: IEvent): TraceEvent | undefined {
  const group = GROUPS[e.kind as keyof typeof GROUPS] as (typeof GROUPS)[keyof typeof GROUPS] | undefined;
  if (!group) return undefined;
  const durationNs = toBigInt(e.durationNs);
  const method = pb.Method[e.method ?? 0] ?? '';
  const pod = formatWhere(e.task ?? undefined);
  const given: Record<string, unknown> = {
    duration: formatNs(durationNs),
    duration_ns: durationNs.toString(),
    ends: formatEnds({ method, start: e.start, end: e.end, errorNs: toBigInt(e.errorBoundNs) }),
    start: edgeText(e.start),
    end: edgeText(e.end),
    method: method.replace(/^METHOD_/, '').toLowerCase(),
    backend: (pb.Backend[e.backend ?? 0] ?? '').replace(/^BACKEND_/, '').toLowerCase(),
    cpu: e.cpu ?? 0,
    task: taskText(e.task),
    tgid: e.task?.tgid || undefined,
    pod: pod === '-' ? undefined : pod,
    context: e.context?.summary || undefined,
    enabled_by: taskText(e.enablingTask),
    disable_site: frameText(e.disableSite?.ip),
    enable_site: frameText(e.enableSite?.ip),
    lock: frameText(e.lock),
    hypervisor: e.hypervisor || undefined,
    traces: e.traces?.length ? e.traces : undefined,
    stack: e.stack?.length ? e.stack.map((f) => frameText(f) ?? '?') : undefined,
    stack_truncated: e.stackTruncated || undefined,
  };
  // Only what the method knew: an absent site is no argument, not an empty one.
  const args = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  return {
    name: e.kind === pb.SectionKind.SECTION_KIND_IRQ_LINE ? `irq ${e.irq ?? 0}: ${holder(e)}` : holder(e),
    ph: 'X',
    cat: args.method as string,
    pid: group.pid,
    tid: group.track(e).tid,
    ts: Number(toBigInt(e.startNs)) / 1000,
    dur: Number(durationNs) / 1000,
    args,
  };
}

/** Writes trace events as they come: each track named (metadata) before its first slice. */
export class TraceEventWriter {
  /** Sections written so far. */
  sections = 0;
  private readonly named = new Set<string>();
  private count = 0;

  constructor(private readonly write: (text: string) => void) {}

  /** The section's slice, and its track's names the first time; false for no section. */
  add(e: IEvent): boolean {
    const slice = sectionSlice(e);
    if (!slice) return false;
    const group = GROUPS[e.kind as keyof typeof GROUPS];
    if (!this.named.has(`p${group.pid}`)) {
      this.named.add(`p${group.pid}`);
      this.emit({ name: 'process_name', ph: 'M', pid: group.pid, tid: 0, args: { name: group.name } });
      this.emit({ name: 'process_sort_index', ph: 'M', pid: group.pid, tid: 0, args: { sort_index: group.pid } });
    }
    const track = group.track(e);
    if (!this.named.has(`t${group.pid}/${track.tid}`)) {
      this.named.add(`t${group.pid}/${track.tid}`);
      this.emit({ name: 'thread_name', ph: 'M', pid: group.pid, tid: track.tid, args: { name: track.name } });
      this.emit({ name: 'thread_sort_index', ph: 'M', pid: group.pid, tid: track.tid, args: { sort_index: track.tid } });
    }
    this.emit(slice);
    this.sections++;
    return true;
  }

  /** The closing bracket; an empty trace is an empty array. */
  end(): void {
    this.write(this.count ? '\n]\n' : '[]\n');
  }

  private emit(event: TraceEvent): void {
    this.write(`${this.count++ ? ',\n' : '[\n'}${JSON.stringify(event)}`);
  }
}

/** A trace-event file being written: events go through writer; close() ends the file. */
export interface TraceFile {
  writer: TraceEventWriter;
  close(): void;
}

/**
 * Creates (or truncates) path for a trace: an error now, before any tracing, if it cannot be
 * written. Each event is written at once, synchronously: no queue to grow if the disk is slow,
 * and what was written is on disk if the command is killed.
 */
export function openTraceFile(path: string): TraceFile {
  const fd = openSync(path, 'w');
  const writer = new TraceEventWriter((text) => { writeSync(fd, text); });
  return {
    writer,
    close() {
      writer.end();
      closeSync(fd);
    },
  };
}
