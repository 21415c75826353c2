// Decodes the binary stream of kmod/include/uapi/irqtrace.h: records from
// /dev/irqtrace (or the eBPF loader's stdout), counters and histograms from
// /dev/irqtrace_stats. Framing is by each item's preamble; a malformed item
// ends decoding with a DecodeError that says where and why.
import { ABI_VERSION, COMM_LEN, COUNTERS, HIST, HIST_BUCKETS, MAGIC, MAX_FRAMES, PREAMBLE_SIZE, RECORD } from './layout.js';
import { Backend, Context, Edge, Kind, Method } from './layout.js';
import { CodeInterner } from './code.js';
import type { CodeLocation } from './code.js';

export class DecodeError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} at byte ${offset}`);
    this.name = 'DecodeError';
  }
}

export interface SectionRecord {
  type: 'record';
  kind: Kind;
  method: Method;
  backend: Backend;
  flags: number;
  cpu: number;
  irq: number;
  enableCpu: number;
  seq: bigint;
  startNs: bigint;
  durationNs: bigint;
  errorNs: bigint;
  cgroupId: bigint;
  pid: number;
  tgid: number;
  comm: string;
  enablePid: number;
  enableTgid: number;
  enableComm: string;
  disableIp: bigint;
  disableParentIp: bigint;
  enableIp: bigint;
  enableParentIp: bigint;
  /** Where the section ran: a task, or the handler (IRQ, timer callback) or softirq it belongs to. */
  context: Context;
  /** The IRQ (Hardirq) or softirq vector (Softirq), else 0. */
  contextNr: number;
  /** The handler or timer callback, when known, else 0n. */
  contextFn: bigint;
  /** What timed each end; flags StartExact and EndExact say whether it is exact or a bound (errorNs). */
  startBy: Edge;
  endBy: Edge;
  /** Edge.Lock at the start: the address of the lock whose irq-saving call opened the section, else 0n. */
  lock: bigint;
  frames: readonly bigint[];
  /** Sites and stack, one object shared by the records with the same ones. */
  code: CodeLocation;
}

export interface HistItem {
  type: 'hist';
  kind: Kind;
  method: Method;
  backend: Backend;
  cpu: number;
  irq: number;
  count: bigint;
  sumNs: bigint;
  maxNs: bigint;
  buckets: bigint[];
}

export interface CountersItem {
  type: 'counters';
  backend: Backend;
  /** The irqs-off method running now; undefined when off. */
  irqsOffMethod: Method | undefined;
  /** Running bits: softirqs off, IRQ lines. */
  running: number;
  cpu: number;
  seen: bigint;
  recorded: bigint;
  droppedRing: bigint;
  droppedGuard: bigint;
  idleExcluded: bigint;
  nmiSkipped: bigint;
  /** Sampled: timer expiries, late or not (sections are only those at least the floor late). */
  samples: bigint;
}

export type Item = SectionRecord | HistItem | CountersItem;

function cString(buf: Buffer, offset: number, length: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString('latin1', offset, end >= 0 && end < offset + length ? end : offset + length);
}

/** A checker of one enum's values: a Set made once, not a scan of the enum per record. */
function member<E extends Record<string, string | number>>(e: E, name: string): (value: number, at: number) => E[keyof E] {
  const valid = new Set(Object.values(e).filter((v) => typeof v === 'number'));
  return (value, at) => {
    if (!valid.has(value)) throw new DecodeError(`invalid ${name} ${value}`, at);
    return value as E[keyof E];
  };
}

const kindOf = member(Kind, 'kind');
const contextOf = member(Context, 'context');
const methodOf = member(Method, 'method');
const backendOf = member(Backend, 'backend');
const edgeOf = member(Edge, 'edge');

const r = RECORD.fields;
const h = HIST.fields;
const c = COUNTERS.fields;

function decodeRecord(buf: Buffer, at: number, size: number, codes: CodeInterner): SectionRecord {
  const nrFrames = buf.readUInt16LE(at + r.nr_frames.offset);
  if (nrFrames > MAX_FRAMES || size !== RECORD.size + 8 * nrFrames) {
    throw new DecodeError(`record of ${size} bytes with ${nrFrames} frames`, at);
  }
  const code = codes.intern(buf, at, size);
  return {
    type: 'record',
    kind: kindOf(buf.readUInt8(at + r.kind.offset), at),
    method: methodOf(buf.readUInt8(at + r.method.offset), at),
    backend: backendOf(buf.readUInt8(at + r.backend.offset), at),
    flags: buf.readUInt8(at + r.flags.offset),
    cpu: buf.readUInt16LE(at + r.cpu.offset),
    irq: buf.readUInt32LE(at + r.irq.offset),
    enableCpu: buf.readUInt32LE(at + r.enable_cpu.offset),
    seq: buf.readBigUInt64LE(at + r.seq.offset),
    startNs: buf.readBigUInt64LE(at + r.start_ns.offset),
    durationNs: buf.readBigUInt64LE(at + r.duration_ns.offset),
    errorNs: buf.readBigUInt64LE(at + r.error_ns.offset),
    cgroupId: buf.readBigUInt64LE(at + r.cgroup_id.offset),
    pid: buf.readUInt32LE(at + r.pid.offset),
    tgid: buf.readUInt32LE(at + r.tgid.offset),
    comm: cString(buf, at + r.comm.offset, COMM_LEN),
    enablePid: buf.readUInt32LE(at + r.enable_pid.offset),
    enableTgid: buf.readUInt32LE(at + r.enable_tgid.offset),
    enableComm: cString(buf, at + r.enable_comm.offset, COMM_LEN),
    disableIp: code.disableIp,
    disableParentIp: code.disableParentIp,
    enableIp: code.enableIp,
    enableParentIp: code.enableParentIp,
    context: contextOf(buf.readUInt8(at + r.context.offset), at),
    contextNr: buf.readUInt32LE(at + r.context_nr.offset),
    contextFn: buf.readBigUInt64LE(at + r.context_fn.offset),
    startBy: edgeOf(buf.readUInt8(at + r.start_by.offset), at),
    endBy: edgeOf(buf.readUInt8(at + r.end_by.offset), at),
    lock: buf.readBigUInt64LE(at + r.lock.offset),
    frames: code.frames,
    code,
  };
}

function decodeHist(buf: Buffer, at: number): HistItem {
  const buckets: bigint[] = [];
  for (let i = 0; i < HIST_BUCKETS; i++) buckets.push(buf.readBigUInt64LE(at + h.buckets.offset + 8 * i));
  return {
    type: 'hist',
    kind: kindOf(buf.readUInt8(at + h.kind.offset), at),
    method: methodOf(buf.readUInt8(at + h.method.offset), at),
    backend: backendOf(buf.readUInt8(at + h.backend.offset), at),
    cpu: buf.readUInt32LE(at + h.cpu.offset),
    irq: buf.readUInt32LE(at + h.irq.offset),
    count: buf.readBigUInt64LE(at + h.count.offset),
    sumNs: buf.readBigUInt64LE(at + h.sum_ns.offset),
    maxNs: buf.readBigUInt64LE(at + h.max_ns.offset),
    buckets,
  };
}

function decodeCounters(buf: Buffer, at: number): CountersItem {
  return {
    type: 'counters',
    backend: backendOf(buf.readUInt8(at + c.backend.offset), at),
    irqsOffMethod: runningMethod(buf.readUInt8(at + c.irqs_off_method.offset), at),
    running: buf.readUInt8(at + c.running.offset),
    cpu: buf.readUInt32LE(at + c.cpu.offset),
    seen: buf.readBigUInt64LE(at + c.seen.offset),
    recorded: buf.readBigUInt64LE(at + c.recorded.offset),
    droppedRing: buf.readBigUInt64LE(at + c.dropped_ring.offset),
    droppedGuard: buf.readBigUInt64LE(at + c.dropped_guard.offset),
    idleExcluded: buf.readBigUInt64LE(at + c.idle_excluded.offset),
    nmiSkipped: buf.readBigUInt64LE(at + c.nmi_skipped.offset),
    samples: buf.readBigUInt64LE(at + c.samples.offset),
  };
}

/** The counters' method running: 0 is off. */
function runningMethod(value: number, at: number): Method | undefined {
  return value === 0 ? undefined : methodOf(value, at);
}

/**
 * Size of the whole item at buf[at], or -1 when buf ends inside it (or its
 * preamble). Throws DecodeError on a malformed preamble.
 */
export function itemSizeAt(buf: Buffer, at: number): number {
  if (buf.length - at < PREAMBLE_SIZE) return -1;
  const magic = buf.readUInt32LE(at);
  const version = buf.readUInt16LE(at + 4);
  const size = buf.readUInt16LE(at + 6);
  if (version !== ABI_VERSION) throw new DecodeError(`unsupported ABI version ${version} (this reader: ${ABI_VERSION})`, at);
  const expected = magic === MAGIC.record ? RECORD.size : magic === MAGIC.hist ? HIST.size : magic === MAGIC.counters ? COUNTERS.size : -1;
  if (expected < 0) throw new DecodeError(`unknown item magic 0x${magic.toString(16)}`, at);
  if (size < expected || (magic !== MAGIC.record && size !== expected)) {
    throw new DecodeError(`item of ${size} bytes, too short for its type`, at);
  }
  return buf.length - at < size ? -1 : size;
}

/** The whole item of `size` bytes at buf[at] (itemSizeAt said so). */
export function decodeItemAt(buf: Buffer, at: number, size: number, codes: CodeInterner): Item {
  const magic = buf.readUInt32LE(at);
  return magic === MAGIC.record ? decodeRecord(buf, at, size, codes) : magic === MAGIC.hist ? decodeHist(buf, at) : decodeCounters(buf, at);
}

/**
 * Decodes every whole item in buf. Returns them and the number of bytes
 * consumed: a trailing partial item is left for the next call (streaming).
 * codes interns the records' code locations across calls.
 */
export function decodeItems(buf: Buffer, codes = new CodeInterner()): { items: Item[]; consumed: number } {
  const items: Item[] = [];
  let at = 0;
  for (let size = itemSizeAt(buf, at); size > 0; size = itemSizeAt(buf, at)) {
    items.push(decodeItemAt(buf, at, size, codes));
    at += size;
  }
  return { items, consumed: at };
}

/** Decodes a complete buffer; a trailing partial item is an error. */
export function decodeAll(buf: Buffer): Item[] {
  const { items, consumed } = decodeItems(buf);
  if (consumed !== buf.length) throw new DecodeError(`truncated item (${buf.length - consumed} bytes left)`, consumed);
  return items;
}
