// Events encoded on the hot path, by hand, field by field, straight into the
// batch's buffer (pipeline/wire.ts). pipeline/event.ts gives the events of one
// code path the same (frozen) stack array and site objects, and of one
// offender the same enrichment: their bytes are made the first time one is
// seen, so a storm of identical stacks costs one copy per event. Zero values
// are left out, as proto3 does; test/unit/event_encode.test.ts holds this to
// protobufjs's own encoding of the same events.
import { irqtrace } from '@irqtrace/proto';
import { LENGTH_DELIMITED, VARINT, WireWriter } from './wire.js';
import type { Uint64Like } from './wire.js';

const pb = irqtrace.v1;
const frameBytes = new WeakMap<irqtrace.v1.IFrame, Uint8Array>();
const stackBytes = new WeakMap<irqtrace.v1.IFrame[], Uint8Array>();
const siteBytes = new WeakMap<irqtrace.v1.ISite, Uint8Array>();
const enrichmentBytes = new WeakMap<irqtrace.v1.IEnrichment, Uint8Array>();
const taskBytes = new WeakMap<irqtrace.v1.ITask, Uint8Array>();

/** Made once per object (cold path), with protobufjs. */
function cached<K extends object>(cache: WeakMap<K, Uint8Array>, key: K, encode: (key: K) => Uint8Array): Uint8Array {
  let bytes = cache.get(key);
  if (!bytes) {
    bytes = encode(key);
    cache.set(key, bytes);
  }
  return bytes;
}

const frame = (f: irqtrace.v1.IFrame): Uint8Array => cached(frameBytes, f, (k) => pb.Frame.encode(k).finish());
const enrichment = (e: irqtrace.v1.IEnrichment): Uint8Array => cached(enrichmentBytes, e, (k) => pb.Enrichment.encode(k).finish());

/** The site's fields (without its own tag and length). */
const site = (s: irqtrace.v1.ISite): Uint8Array =>
  cached(siteBytes, s, (k) => {
    const w = new WireWriter(256);
    if (k.ip) w.tag(1, LENGTH_DELIMITED).bytes(frame(k.ip));
    if (k.parentIp) w.tag(2, LENGTH_DELIMITED).bytes(frame(k.parentIp));
    return w.finish();
  });

/** Every frame of the stack as Event.stack fields, tags included. */
const stack = (frames: irqtrace.v1.IFrame[]): Uint8Array =>
  cached(stackBytes, frames, (k) => {
    const w = new WireWriter(2048);
    for (const f of k) w.tag(13, LENGTH_DELIMITED).bytes(frame(f));
    return w.finish();
  });

const isZero = (v: Uint64Like | null | undefined): v is null | undefined | 0 =>
  v === null || v === undefined || (typeof v === 'number' ? v === 0 : v.low === 0 && v.high === 0);

function writeUint64(w: WireWriter, field: number, v: Uint64Like | null | undefined): void {
  if (!isZero(v)) w.tag(field, VARINT).uint64(v);
}

function writeString(w: WireWriter, field: number, s: string | null | undefined): void {
  if (s) w.tag(field, LENGTH_DELIMITED).string(s);
}

/** The task's fields (without its own tag and length); frozen tasks are shared, so cached. */
function taskFields(t: irqtrace.v1.ITask): Uint8Array {
  const encode = (k: irqtrace.v1.ITask): Uint8Array => {
    const w = new WireWriter(256);
    if (k.pid) w.tag(1, VARINT).uint32(k.pid);
    if (k.tgid) w.tag(2, VARINT).uint32(k.tgid);
    writeString(w, 3, k.comm);
    writeUint64(w, 4, k.cgroupId);
    writeString(w, 5, k.cgroupPath);
    writeString(w, 6, k.containerId);
    writeString(w, 7, k.podUid);
    writeString(w, 8, k.podNamespace);
    writeString(w, 9, k.podName);
    return w.finish();
  };
  return Object.isFrozen(t) ? cached(taskBytes, t, encode) : encode(t);
}

/** Writes the Event's fields (not its own tag or length). */
export function writeEvent(w: WireWriter, e: irqtrace.v1.IEvent): void {
  if (e.kind) w.tag(1, VARINT).int32(e.kind);
  if (e.method) w.tag(2, VARINT).int32(e.method);
  if (e.backend) w.tag(3, VARINT).int32(e.backend);
  if (e.cpu) w.tag(4, VARINT).uint32(e.cpu);
  writeUint64(w, 5, e.startNs);
  writeUint64(w, 6, e.durationNs);
  writeUint64(w, 7, e.errorBoundNs);
  if (e.irq) w.tag(8, VARINT).uint32(e.irq);
  if (e.task) w.tag(9, LENGTH_DELIMITED).bytes(taskFields(e.task));
  if (e.enablingTask) w.tag(10, LENGTH_DELIMITED).bytes(taskFields(e.enablingTask));
  if (e.disableSite) w.tag(11, LENGTH_DELIMITED).bytes(site(e.disableSite));
  if (e.enableSite) w.tag(12, LENGTH_DELIMITED).bytes(site(e.enableSite));
  if (e.stack?.length) w.raw(stack(e.stack));
  if (e.stackTruncated) w.tag(14, VARINT).bool(true);
  if (e.enrichment) w.tag(15, LENGTH_DELIMITED).bytes(enrichment(e.enrichment));
  for (const t of e.traces ?? []) w.tag(16, LENGTH_DELIMITED).string(t);
}

/** Writes the event as a length-delimited field (EventBatch.events, say). */
export function writeEventField(w: WireWriter, field: number, e: irqtrace.v1.IEvent): void {
  w.tag(field, LENGTH_DELIMITED);
  // Events with a stack run to hundreds of bytes: keep two bytes for the length.
  const mark = w.begin(e.stack?.length ? 1000 : 100);
  writeEvent(w, e);
  w.end(mark);
}

export function encodeEvent(event: irqtrace.v1.IEvent): Uint8Array {
  const w = new WireWriter(1024);
  writeEvent(w, event);
  return w.finish();
}
