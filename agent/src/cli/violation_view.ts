// What `irqtrace record` prints per event: a row of the live table, or one
// JSON object. From the Event alone, so the events of the kernel side this
// command runs and those it reads from the node agent look the same.
import { irqtrace, toBigInt } from '@irqtrace/proto';
import type { Output } from './output.js';
import type { TraceEventWriter } from './trace_events.js';
import { SECTION_KINDS } from '../pipeline/event.js';
import { Kind } from '../records/layout.js';
import { KIND_NAMES, VIOLATION_HEADER, formatEnds, formatLock, formatNs, formatRow, formatWhere } from './format.js';

const pb = irqtrace.v1;

/** The kinds' names by their wire value: KIND_NAMES, through the one kind mapping (SECTION_KINDS). */
const KINDS = new Map(Object.values(Kind).filter((k): k is Kind => typeof k === 'number').map((k) => [SECTION_KINDS[k], KIND_NAMES[k]]));

/** Wall-clock time of a CLOCK_MONOTONIC instant of this machine (Node's hrtime is CLOCK_MONOTONIC). */
function wallClock(monoNs: bigint): Date {
  return new Date(Date.now() - Number(process.hrtime.bigint() - monoNs) / 1e6);
}

export class ViolationView {
  /** Events shown so far. */
  shown = 0;

  constructor(
    private readonly io: Output,
    private readonly json: boolean,
    /** --output: every event shown also goes to this trace-event file. */
    private readonly trace?: TraceEventWriter,
  ) {}

  /** The table's header (nothing for JSON). */
  header(): void {
    if (!this.json) this.io.out.write(`${formatRow(VIOLATION_HEADER)}\n`);
  }

  show(event: irqtrace.v1.IEvent): void {
    this.shown++;
    this.trace?.add(event);
    if (this.json) {
      const object = pb.Event.toObject(pb.Event.fromObject(event), { longs: String, enums: String });
      this.io.out.write(`${JSON.stringify(object)}\n`);
      return;
    }
    const frames = (event.stack ?? []).slice(0, 3).map((f) => f.symbol ?? `0x${toBigInt(f.address).toString(16)}`);
    const time = wallClock(toBigInt(event.startNs)).toISOString().slice(11, 23);
    const kindName = KINDS.get(event.kind ?? pb.SectionKind.SECTION_KIND_UNSPECIFIED) ?? '?';
    const kind = event.kind === pb.SectionKind.SECTION_KIND_IRQ_LINE ? `${kindName} ${event.irq ?? 0}` : kindName;
    // A handler's or softirq's section is its own, not the interrupted task's or pod's; a host stall the host's.
    const who = event.hypervisor ? 'hypervisor (steal)' : event.context?.summary || `${event.task?.comm || '?'}/${event.task?.pid ?? 0}`;
    const ends = formatEnds({ method: pb.Method[event.method ?? 0] ?? '', start: event.start, end: event.end, errorNs: toBigInt(event.errorBoundNs) });
    const lock = event.lock ? formatLock({ ...event.lock, address: toBigInt(event.lock.address), offset: toBigInt(event.lock.offset) }) : '-';
    if (this.io.err.isTTY) this.io.err.write('\r\x1b[K');
    this.io.out.write(
      `${formatRow({ time, kind, cpu: String(event.cpu ?? 0), duration: formatNs(toBigInt(event.durationNs)), ends, task: who, where: event.context || event.hypervisor ? '-' : formatWhere(event.task ?? undefined), lock, frames: frames.join(' < ') })}\n`,
    );
  }

  /** "waiting: 12 s, 3 violations" on a terminal, every second, until the returned stop is called. */
  progress(): () => void {
    if (!this.io.err.isTTY) return () => {};
    const began = Date.now();
    const timer = setInterval(() => { this.io.err.write(`\r\x1b[Kwaiting: ${Math.round((Date.now() - began) / 1000)} s, ${this.shown} violations`); }, 1000);
    return () => {
      clearInterval(timer);
      this.io.err.write('\r\x1b[K');
    };
  }
}
