// Events encoded once, on the hot path, with their frames spliced in as
// bytes: a frame (address, symbol, offset, module) is encoded the first time
// its cached object is seen (pipeline/event.ts gives one object per address),
// so a storm of identical stacks costs one string encode per distinct frame.
// Protobuf fields may come in any order, so appending them after the rest of
// the event is still a valid Event.
import { irqtrace, Writer } from '@irqtrace/proto';

const pb = irqtrace.v1;
const frameBytes = new WeakMap<irqtrace.v1.IFrame, Uint8Array>();

// Field tags, length-delimited (wire type 2).
const SITE_IP = (1 << 3) | 2;
const SITE_PARENT = (2 << 3) | 2;
const EVENT_DISABLE_SITE = (11 << 3) | 2;
const EVENT_ENABLE_SITE = (12 << 3) | 2;
const EVENT_STACK = (13 << 3) | 2;

function frame(f: irqtrace.v1.IFrame): Uint8Array {
  let bytes = frameBytes.get(f);
  if (!bytes) {
    bytes = pb.Frame.encode(f).finish();
    frameBytes.set(f, bytes);
  }
  return bytes;
}

function site(s: irqtrace.v1.ISite): Uint8Array {
  const w = Writer.create();
  if (s.ip) w.uint32(SITE_IP).bytes(frame(s.ip));
  if (s.parentIp) w.uint32(SITE_PARENT).bytes(frame(s.parentIp));
  return w.finish();
}

export function encodeEvent(event: irqtrace.v1.IEvent): Uint8Array {
  const { stack, disableSite, enableSite, ...rest } = event;
  const w = pb.Event.encode(rest);
  if (disableSite) w.uint32(EVENT_DISABLE_SITE).bytes(site(disableSite));
  if (enableSite) w.uint32(EVENT_ENABLE_SITE).bytes(site(enableSite));
  for (const f of stack ?? []) w.uint32(EVENT_STACK).bytes(frame(f));
  return w.finish();
}
