// Events encoded on the hot path, by hand, field by field, straight into the
// batch's buffer (pipeline/wire.ts). pipeline/event.ts gives the events of one
// code path the same (frozen) stack array and site objects, and of one
// offender the same enrichment: their bytes are made the first time one is
// seen, so a storm of identical stacks costs one copy per event. Zero values
// are left out, as proto3 does; test/unit/event_encode.test.ts holds this to
// protobufjs's own encoding of the same events.
import { TAGS, irqtrace } from '@irqtrace/proto';
import { WireWriter } from './wire.js';
import type { Uint64Like } from './wire.js';

const pb = irqtrace.v1;
const { Event, Site, Task } = TAGS;
const frameBytes = new WeakMap<irqtrace.v1.IFrame, Uint8Array>();
const stackBytes = new WeakMap<irqtrace.v1.IFrame[], Uint8Array>();
const siteBytes = new WeakMap<irqtrace.v1.ISite, Uint8Array>();
const enrichmentBytes = new WeakMap<irqtrace.v1.IEnrichment, Uint8Array>();
const contextBytes = new WeakMap<irqtrace.v1.IContext, Uint8Array>();
const edgeBytes = new WeakMap<irqtrace.v1.IEdge, Uint8Array>();
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
const context = (c: irqtrace.v1.IContext): Uint8Array => cached(contextBytes, c, (k) => pb.Context.encode(k).finish());
const edge = (e: irqtrace.v1.IEdge): Uint8Array => cached(edgeBytes, e, (k) => pb.Edge.encode(k).finish());

/** The site's fields (without its own tag and length). */
const site = (s: irqtrace.v1.ISite): Uint8Array =>
  cached(siteBytes, s, (k) => {
    const w = new WireWriter(256);
    if (k.ip) w.tag(Site.ip).bytes(frame(k.ip));
    if (k.parentIp) w.tag(Site.parentIp).bytes(frame(k.parentIp));
    return w.finish();
  });

/** Every frame of the stack as Event.stack fields, tags included. */
const stack = (frames: irqtrace.v1.IFrame[]): Uint8Array =>
  cached(stackBytes, frames, (k) => {
    const w = new WireWriter(2048);
    for (const f of k) w.tag(Event.stack).bytes(frame(f));
    return w.finish();
  });

const isZero = (v: Uint64Like | null | undefined): v is null | undefined | 0 =>
  v === null || v === undefined || (typeof v === 'number' ? v === 0 : v.low === 0 && v.high === 0);

function writeUint64(w: WireWriter, tag: number, v: Uint64Like | null | undefined): void {
  if (!isZero(v)) w.tag(tag).uint64(v);
}

function writeString(w: WireWriter, tag: number, s: string | null | undefined): void {
  if (s) w.tag(tag).string(s);
}

/** The task's fields (without its own tag and length); frozen tasks are shared, so cached. */
function taskFields(t: irqtrace.v1.ITask): Uint8Array {
  const encode = (k: irqtrace.v1.ITask): Uint8Array => {
    const w = new WireWriter(256);
    if (k.pid) w.tag(Task.pid).uint32(k.pid);
    if (k.tgid) w.tag(Task.tgid).uint32(k.tgid);
    writeString(w, Task.comm, k.comm);
    writeUint64(w, Task.cgroupId, k.cgroupId);
    writeString(w, Task.cgroupPath, k.cgroupPath);
    writeString(w, Task.containerId, k.containerId);
    writeString(w, Task.podUid, k.podUid);
    writeString(w, Task.podNamespace, k.podNamespace);
    writeString(w, Task.podName, k.podName);
    return w.finish();
  };
  return Object.isFrozen(t) ? cached(taskBytes, t, encode) : encode(t);
}

/** Writes the Event's fields (not its own tag or length). */
export function writeEvent(w: WireWriter, e: irqtrace.v1.IEvent): void {
  if (e.kind) w.tag(Event.kind).int32(e.kind);
  if (e.method) w.tag(Event.method).int32(e.method);
  if (e.backend) w.tag(Event.backend).int32(e.backend);
  if (e.cpu) w.tag(Event.cpu).uint32(e.cpu);
  writeUint64(w, Event.startNs, e.startNs);
  writeUint64(w, Event.durationNs, e.durationNs);
  writeUint64(w, Event.errorBoundNs, e.errorBoundNs);
  if (e.irq) w.tag(Event.irq).uint32(e.irq);
  if (e.task) w.tag(Event.task).bytes(taskFields(e.task));
  if (e.enablingTask) w.tag(Event.enablingTask).bytes(taskFields(e.enablingTask));
  if (e.disableSite) w.tag(Event.disableSite).bytes(site(e.disableSite));
  if (e.enableSite) w.tag(Event.enableSite).bytes(site(e.enableSite));
  if (e.stack?.length) w.raw(stack(e.stack));
  if (e.stackTruncated) w.tag(Event.stackTruncated).bool(true);
  if (e.enrichment) w.tag(Event.enrichment).bytes(enrichment(e.enrichment));
  for (const t of e.traces ?? []) w.tag(Event.traces).string(t);
  if (e.context) w.tag(Event.context).bytes(context(e.context));
  if (e.start) w.tag(Event.start).bytes(edge(e.start));
  if (e.end) w.tag(Event.end).bytes(edge(e.end));
  if (e.lock) w.tag(Event.lock).bytes(frame(e.lock));
  if (e.hypervisor) w.tag(Event.hypervisor).bool(true);
}

/** Writes the event as a length-delimited field whose tag is given (EventBatch.events, say). */
export function writeEventField(w: WireWriter, tag: number, e: irqtrace.v1.IEvent): void {
  w.tag(tag);
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
