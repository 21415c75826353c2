// One agent batch to what is published: per trace, the trace's events with
// the batch's losses (subject ...events), and the histogram snapshot (subject
// ...hist). Events pass through as the agent encoded them: the batch is
// scanned for each event's traces and pod UID, never decoded whole, and an
// event is rewritten only to add its pod's namespace and name to its task.
// test/unit/ingest_split.test.ts holds this to a decode-and-encode reference.
import { Reader, Writer, irqtrace } from '@irqtrace/proto';
import { subject } from './subjects.js';

export interface PodRef {
  namespace: string;
  name: string;
}

/** pod UID -> namespace/name (a metadata-only pod informer, or a map in tests). */
export interface PodDirectory {
  lookup(uid: string): PodRef | undefined;
}

export interface Publication {
  subject: string;
  msgID: string;
  data: Uint8Array;
  /** Events in it (for metrics). */
  events: number;
}

const LEN = 2;

/** A length-delimited field's value, and where its tag started. */
interface Span {
  tagAt: number;
  start: number;
  end: number;
}

/** Each length-delimited field of buf with one of these numbers, in order; others skipped. */
function fields(buf: Uint8Array, wanted: (field: number) => boolean, each: (field: number, span: Span, r: Reader) => void): void {
  const r = Reader.create(buf);
  while (r.pos < r.len) {
    const tagAt = r.pos;
    const tag = r.uint32();
    const field = tag >>> 3;
    if ((tag & 7) === LEN && wanted(field)) {
      const len = r.uint32();
      const start = r.pos;
      r.skip(len);
      each(field, { tagAt, start, end: start + len }, r);
    } else {
      r.skipType(tag & 7);
    }
  }
}

const text = (buf: Uint8Array, s: Span): string => Buffer.from(buf.buffer, buf.byteOffset + s.start, s.end - s.start).toString('utf8');

interface ScannedEvent {
  bytes: Uint8Array;
  traces: string[];
  /** The task field (9) and its pod UID, when it has one and no pod name yet. */
  task?: { span: Span; podUid: string };
}

function scanEvent(bytes: Uint8Array): ScannedEvent {
  const e: ScannedEvent = { bytes, traces: [] };
  fields(bytes, (f) => f === 16 || f === 9, (field, span) => {
    if (field === 16) {
      e.traces.push(text(bytes, span));
      return;
    }
    const task = bytes.subarray(span.start, span.end);
    const found = { podUid: '', named: false };
    fields(task, (f) => f === 7 || f === 9, (f, s) => {
      if (f === 7) found.podUid = text(task, s);
      else found.named = s.end > s.start;
    });
    if (found.podUid && !found.named) e.task = { span, podUid: found.podUid };
  });
  return e;
}

/** An agent batch as scanned: its seq, events (their traces and pod UID found), losses, histograms and state as bytes. */
export interface ScannedBatch {
  seq: bigint;
  events: ScannedEvent[];
  losses: Uint8Array[];
  histograms?: Uint8Array;
  state?: Uint8Array;
}

/** Scans an EventBatch's bytes; a malformed one throws (protobufjs's RangeError). */
export function scanBatch(batch: Uint8Array): ScannedBatch {
  let seq = 0n;
  const events: ScannedEvent[] = [];
  const losses: Uint8Array[] = [];
  let histograms: Uint8Array | undefined;
  let state: Uint8Array | undefined;
  const r = Reader.create(batch);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === 0) {
      seq = readUint64(r);
    } else if ((tag & 7) === LEN && field >= 3 && field <= 6) {
      const len = r.uint32();
      const value = batch.subarray(r.pos, r.pos + len);
      r.skip(len);
      if (field === 3) events.push(scanEvent(value));
      else if (field === 4) losses.push(value);
      else if (field === 5) histograms = value;
      else state = value;
    } else {
      r.skipType(tag & 7);
    }
  }
  return { seq, events, losses, ...(histograms ? { histograms } : {}), ...(state ? { state } : {}) };
}

/** A uint64 field's value (protobufjs gives a number or a Long). */
function readUint64(r: Reader): bigint {
  const v = r.uint64();
  return typeof v === 'number' ? BigInt(v) : (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
}

/** The event with its task's pod namespace and name added (the task field rewritten, the rest copied). */
function withPod(e: ScannedEvent, pods: PodDirectory): Uint8Array {
  const task = e.task;
  const pod = task ? pods.lookup(task.podUid) : undefined;
  if (!task || !pod) return e.bytes;
  const extra = Writer.create().uint32((8 << 3) | LEN).string(pod.namespace).uint32((9 << 3) | LEN).string(pod.name).finish();
  const w = Writer.create();
  w.uint32((9 << 3) | LEN).uint32(task.span.end - task.span.start + extra.length);
  const head = w.finish();
  const b = e.bytes;
  const out = new Uint8Array(task.span.tagAt + head.length + (task.span.end - task.span.start) + extra.length + (b.length - task.span.end));
  let at = 0;
  for (const part of [b.subarray(0, task.span.tagAt), head, b.subarray(task.span.start, task.span.end), extra, b.subarray(task.span.end)]) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * The publications of one scanned batch. nodeTraces are the traces the node
 * was told about: an event without traces (an older agent) belongs to all of
 * them, and histograms go to each.
 */
export function splitBatch(node: string, bootId: string, b: ScannedBatch, nodeTraces: readonly string[], pods: PodDirectory, receivedUnixNs: bigint): Publication[] {
  const byTrace = new Map<string, Uint8Array[]>();
  for (const t of nodeTraces) byTrace.set(t, []);
  for (const e of b.events) {
    const bytes = withPod(e, pods);
    for (const t of e.traces.length ? e.traces : nodeTraces) {
      let list = byTrace.get(t);
      if (!list) byTrace.set(t, (list = []));
      list.push(bytes);
    }
  }
  const received = receivedUnixNs.toString();
  const header = (trace: string): Writer => {
    const w = Writer.create();
    if (node) w.uint32((1 << 3) | LEN).string(node);
    if (bootId) w.uint32((2 << 3) | LEN).string(bootId);
    if (b.seq) w.uint32(3 << 3).uint64(b.seq.toString());
    return w.uint32((4 << 3) | LEN).string(trace).uint32(5 << 3).uint64(received);
  };
  const seqText = b.seq.toString();
  const out: Publication[] = [];
  for (const [trace, events] of byTrace) {
    const id = `${node}/${bootId}/${seqText}/${trace}`;
    if (events.length || b.losses.length) {
      const w = header(trace);
      for (const e of events) w.uint32((6 << 3) | LEN).bytes(e);
      for (const l of b.losses) w.uint32((7 << 3) | LEN).bytes(l);
      out.push({ subject: subject(trace, node, 'events'), msgID: `${id}/events`, data: w.finish(), events: events.length });
    }
    if (b.histograms) {
      const data = header(trace).uint32((8 << 3) | LEN).bytes(b.histograms).finish();
      out.push({ subject: subject(trace, node, 'hist'), msgID: `${id}/hist`, data, events: 0 });
    }
  }
  return out;
}

/** A batch's backend state, if it carries one (decoded: it is small). */
export function batchState(state: Uint8Array | undefined): irqtrace.v1.IBackendState | undefined {
  return state ? irqtrace.v1.BackendState.decode(state) : undefined;
}
