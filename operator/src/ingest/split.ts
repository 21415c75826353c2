// One agent batch to what is published: per trace, the trace's events with
// the batch's losses (subject ...events), and the histogram snapshot (subject
// ...hist). Events pass through as the agent encoded them: the batch is
// scanned for each event's traces and pod UID, never decoded whole, and an
// event is rewritten only to add its pod's namespace and name to its task.
// test/unit/ingest_split.test.ts holds this to a decode-and-encode reference.
import { Reader, TAGS, Writer, irqtrace } from '@irqtrace/proto';
import { subject } from './subjects.js';

const { Event, EventBatch, NodeBatch, Task } = TAGS;

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

const LENGTH_DELIMITED = 2;

/** A length-delimited field's value, and where its tag started. */
interface Span {
  tagAt: number;
  start: number;
  end: number;
}

/** Each length-delimited field of buf whose tag is one of these, in order; others skipped. */
function fields(buf: Uint8Array, wanted: readonly number[], each: (tag: number, span: Span) => void): void {
  const r = Reader.create(buf);
  while (r.pos < r.len) {
    const tagAt = r.pos;
    const tag = r.uint32();
    if ((tag & 7) === LENGTH_DELIMITED && wanted.includes(tag)) {
      const len = r.uint32();
      const start = r.pos;
      r.skip(len);
      each(tag, { tagAt, start, end: start + len });
    } else {
      r.skipType(tag & 7);
    }
  }
}

const text = (buf: Uint8Array, s: Span): string => Buffer.from(buf.buffer, buf.byteOffset + s.start, s.end - s.start).toString('utf8');

interface ScannedEvent {
  bytes: Uint8Array;
  traces: string[];
  /** The task field and its pod UID, when it has one and no pod name yet. */
  task?: { span: Span; podUid: string };
}

function scanEvent(bytes: Uint8Array): ScannedEvent {
  const e: ScannedEvent = { bytes, traces: [] };
  fields(bytes, [Event.traces, Event.task], (tag, span) => {
    if (tag === Event.traces) {
      e.traces.push(text(bytes, span));
      return;
    }
    const task = bytes.subarray(span.start, span.end);
    const found = { podUid: '', named: false };
    fields(task, [Task.podUid, Task.podName], (t, s) => {
      if (t === Task.podUid) found.podUid = text(task, s);
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
    if (tag === EventBatch.seq) {
      seq = readUint64(r);
      continue;
    }
    if (tag !== EventBatch.events && tag !== EventBatch.losses && tag !== EventBatch.histograms && tag !== EventBatch.state) {
      r.skipType(tag & 7);
      continue;
    }
    const len = r.uint32();
    const value = batch.subarray(r.pos, r.pos + len);
    r.skip(len);
    if (tag === EventBatch.events) events.push(scanEvent(value));
    else if (tag === EventBatch.losses) losses.push(value);
    else if (tag === EventBatch.histograms) histograms = value;
    else state = value;
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
  const extra = Writer.create().uint32(Task.podNamespace).string(pod.namespace).uint32(Task.podName).string(pod.name).finish();
  const w = Writer.create();
  w.uint32(Event.task).uint32(task.span.end - task.span.start + extra.length);
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
    if (node) w.uint32(NodeBatch.node).string(node);
    if (bootId) w.uint32(NodeBatch.bootId).string(bootId);
    if (b.seq) w.uint32(NodeBatch.seq).uint64(b.seq.toString());
    return w.uint32(NodeBatch.trace).string(trace).uint32(NodeBatch.receivedUnixNs).uint64(received);
  };
  const seqText = b.seq.toString();
  const out: Publication[] = [];
  for (const [trace, events] of byTrace) {
    const id = `${node}/${bootId}/${seqText}/${trace}`;
    if (events.length || b.losses.length) {
      const w = header(trace);
      for (const e of events) w.uint32(NodeBatch.events).bytes(e);
      for (const l of b.losses) w.uint32(NodeBatch.losses).bytes(l);
      out.push({ subject: subject(trace, node, 'events'), msgID: `${id}/events`, data: w.finish(), events: events.length });
    }
    if (b.histograms) {
      const data = header(trace).uint32(NodeBatch.histograms).bytes(b.histograms).finish();
      out.push({ subject: subject(trace, node, 'hist'), msgID: `${id}/hist`, data, events: 0 });
    }
  }
  return out;
}

/** A batch's backend state, if it carries one (decoded: it is small). */
export function batchState(state: Uint8Array | undefined): irqtrace.v1.IBackendState | undefined {
  return state ? irqtrace.v1.BackendState.decode(state) : undefined;
}
