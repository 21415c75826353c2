// The hot-path encoder splices cached frame bytes into events: what it writes
// must decode to exactly what protobufjs's own encoding of the event gives.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { irqtrace, toBigInt, toLong } from '@irqtrace/proto';
import { Backend, Context, Edge, Kallsyms, Kind, Method, RecordFlag, toEvent } from '@irqtrace/agent';
import type { SectionRecord } from '@irqtrace/agent';
import { encodeEvent } from '../../agent/src/pipeline/encode.js';

const syms = Kallsyms.parse(
  ['ffffffff81000000 T _stext', 'ffffffff81464600 T __schedule', 'ffffffff82a05040 D tasklist_lock', 'ffffffffa020a191 t irqburn_irqs_off\t[irqtrace_selftest]'].join('\n'),
);

function rec(frames: bigint[], flags = RecordFlag.SitesValid | RecordFlag.EnablerValid): SectionRecord {
  const code = { disableIp: 0xffffffffa020a1c2n, disableParentIp: 0xffffffff81464694n, enableIp: 0xffffffffa020a1d0n, enableParentIp: 0n, frames };
  return {
    type: 'record', kind: Kind.IrqsOff, method: Method.Exact, backend: Backend.Kmod, flags,
    cpu: 3, irq: 0, enableCpu: 3, seq: 9n, startNs: 2n ** 63n + 5n, durationNs: 1_500_000n, errorNs: 0n, cgroupId: 77n,
    pid: 42, tgid: 40, comm: 'irqburn', enablePid: 43, enableTgid: 40, enableComm: 'kworker/3:1', context: Context.Task, contextNr: 0, contextFn: 0n,
    startBy: Edge.Tracepoint, endBy: Edge.Tracepoint, lock: 0n,
    ...code, code,
  };
}

/** What a reader sees: proto3 does not tell a zero value from an absent one. */
const plain = (m: irqtrace.v1.Event) => irqtrace.v1.Event.toObject(m, { longs: String, defaults: true });

const uint64 = fc.oneof(fc.constant(0), fc.nat(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => toLong(v)));
const text = fc.oneof(fc.constant(''), fc.string({ maxLength: 50 }), fc.string({ unit: 'grapheme', maxLength: 300 }));
const frame = fc.record({ address: uint64, symbol: text, offset: uint64, module: text }, { requiredKeys: [] });
const task = fc.record(
  { pid: fc.nat({ max: 0xffffffff }), tgid: fc.nat({ max: 0xffffffff }), comm: text, cgroupId: uint64, cgroupPath: text, containerId: text, podUid: text, podNamespace: text, podName: text },
  { requiredKeys: [] },
);
const site = fc.record({ ip: frame, parentIp: fc.option(frame) }, { requiredKeys: [] });
/** Any value of a generated (numeric) enum. */
const enumOf = <E extends number>(e: Record<string, E | string>) => fc.constantFrom(...Object.values(e).filter((v): v is E => typeof v === 'number'));
const edge = fc.record({ source: enumOf(irqtrace.v1.EdgeSource), exact: fc.boolean() }, { requiredKeys: [] });
const anyEvent = fc.record(
  {
    kind: enumOf(irqtrace.v1.SectionKind),
    method: enumOf(irqtrace.v1.Method),
    backend: enumOf(irqtrace.v1.Backend),
    cpu: fc.nat({ max: 0xffffffff }), startNs: uint64, durationNs: uint64, errorBoundNs: uint64, irq: fc.nat({ max: 0xffffffff }),
    task, enablingTask: fc.option(task), disableSite: fc.option(site), enableSite: fc.option(site),
    stack: fc.array(frame, { maxLength: 32 }), stackTruncated: fc.boolean(),
    enrichment: fc.option(fc.record({ openFiles: fc.array(text, { maxLength: 5 }), sockets: fc.array(text, { maxLength: 5 }), heldLocks: fc.array(text, { maxLength: 3 }) })),
    traces: fc.array(text, { maxLength: 4 }),
    context: fc.option(fc.record({ kind: enumOf(irqtrace.v1.ContextKind), irq: fc.nat({ max: 0xffffffff }), softirq: text, handler: fc.option(frame), actions: fc.array(text, { maxLength: 3 }), summary: text }, { requiredKeys: [] })),
    start: fc.option(edge),
    end: fc.option(edge),
    lock: fc.option(frame),
    hypervisor: fc.boolean(),
  },
  { requiredKeys: [] },
);

describe('the hot-path event encoder', () => {
  it('encodes any event as protobufjs does', () => {
    fc.assert(
      fc.property(anyEvent, (event) => {
        const e: irqtrace.v1.IEvent = event;
        expect(plain(irqtrace.v1.Event.decode(encodeEvent(e)))).toEqual(plain(irqtrace.v1.Event.decode(irqtrace.v1.Event.encode(e).finish())));
      }),
      { numRuns: 300 },
    );
  });

  it('decodes to what the generated encoder gives, frames cached or not', () => {
    const stacks = [[], [0xffffffffa020a1d0n, 0xffffffff81464694n, 0x1234n], [0xffffffffa020a1d0n, 0xffffffffa020a1d0n]];
    for (const [frames, flags] of stacks.flatMap((s) => [[s, RecordFlag.SitesValid] as const, [s, RecordFlag.StackTruncated] as const])) {
      const event = toEvent(rec(frames, flags), syms, { task: { path: '/kubepods/pod1', podUid: 'u' } });
      event.traces = ['a', 'b'];
      for (let i = 0; i < 2; i++) {
        const fast = irqtrace.v1.Event.decode(encodeEvent(event));
        const reference = irqtrace.v1.Event.decode(irqtrace.v1.Event.encode(event).finish());
        expect(plain(fast)).toEqual(plain(reference));
      }
    }
  });

  it('symbolizes a code path once and shares it between its events', () => {
    const one = rec([0xffffffffa020a1d0n, 0xffffffff81464694n]);
    const a = toEvent(one, syms);
    const b = toEvent({ ...one, pid: 7 }, syms);
    expect(b.stack).toBe(a.stack);
    expect(b.disableSite).toBe(a.disableSite);
    expect(a.stack?.map((f) => f.symbol)).toEqual(['irqburn_irqs_off', '__schedule']);
    expect(a.disableSite?.parentIp?.symbol).toBe('__schedule');
    expect(Object.isFrozen(a.stack)).toBe(true);
    // Another table (modules changed): symbolized anew.
    const other = Kallsyms.parse('ffffffffa0200000 t moved\t[irqtrace_selftest]');
    expect(toEvent(one, other).stack?.map((f) => f.symbol)).toEqual(['moved', undefined]);
  });

  it('shares a task between its events until something about it changes', () => {
    const who = { path: '/kubepods/pod1', podUid: 'u' };
    const one = rec([]);
    const task = toEvent(one, syms, { task: who }).task;
    expect(toEvent({ ...one, seq: 99n }, syms, { task: who }).task).toBe(task);
    expect(Object.isFrozen(task)).toBe(true);
    const changed = [
      toEvent({ ...one, comm: 'other' }, syms, { task: who }).task,
      toEvent({ ...one, tgid: 1 }, syms, { task: who }).task,
      toEvent({ ...one, cgroupId: 77n }, syms, { task: who }).task,
      toEvent(one, syms, { task: { ...who } }).task,
    ];
    for (const t of changed) expect(t).not.toBe(task);
    expect(changed.map((t) => [t?.comm, t?.tgid, toBigInt(t?.cgroupId)])).toEqual([
      ['other', one.tgid, one.cgroupId],
      [one.comm, 1, one.cgroupId],
      [one.comm, one.tgid, 77n],
      [one.comm, one.tgid, one.cgroupId],
    ]);
  });

  it('says how each end was timed, and names the lock that opened the section as data', () => {
    const hybrid = { ...rec([0xffffffff81464694n]), method: Method.Hybrid, startBy: Edge.Lock, endBy: Edge.Sample, lock: 0xffffffff82a05040n };
    const event = toEvent({ ...hybrid, flags: RecordFlag.SitesValid | RecordFlag.EndExact, errorNs: 1_000_000n }, syms);
    expect(event).toMatchObject({
      method: irqtrace.v1.Method.METHOD_HYBRID,
      start: { source: irqtrace.v1.EdgeSource.EDGE_SOURCE_LOCK, exact: false },
      end: { source: irqtrace.v1.EdgeSource.EDGE_SOURCE_SAMPLE, exact: true },
      lock: { symbol: 'tasklist_lock', module: '' },
    });
    expect(toBigInt(event.lock?.offset)).toBe(0n);
    // One object per edge and per lock, shared by the events (their bytes are cached by the encoder).
    const again = toEvent({ ...hybrid, flags: RecordFlag.EndExact, seq: 10n }, syms);
    expect([again.end, again.lock]).toEqual([event.end, event.lock]);
    expect(again.end).toBe(event.end);
    expect(again.lock).toBe(event.lock);
    // Within the lock's symbol (a lock in a static struct): its offset.
    const inside = toEvent({ ...hybrid, lock: 0xffffffff82a05048n }, syms).lock;
    expect([inside?.symbol, toBigInt(inside?.offset)]).toEqual(['tasklist_lock', 8n]);
    // Frames are code as before: the stack's frame is in __schedule, not in a data symbol.
    expect(event.stack?.[0]?.symbol).toBe('__schedule');
    // A lock in allocated memory (the direct map): its address only.
    expect(toEvent({ ...hybrid, lock: 0xffff888003a1c2c0n }, syms).lock).toEqual({ address: toLong(0xffff888003a1c2c0n) });
    expect(toEvent(rec([]), syms).lock).toBeNull();
    const decoded = irqtrace.v1.Event.decode(encodeEvent(event));
    expect(plain(decoded)).toEqual(plain(irqtrace.v1.Event.decode(irqtrace.v1.Event.encode(event).finish())));
    expect(decoded.lock?.symbol).toBe('tasklist_lock');
  });

  it("says a section the steal clock gave the host is the hypervisor's, and charges no pod with it", () => {
    const who = { task: { path: '/kubepods/pod1', podUid: 'u1', podName: 'checkout', podNamespace: 'shop' }, enrichment: { openFiles: ['/data'], sockets: [], heldLocks: [] } };
    const sampled = { ...rec([0xffffffff81464694n]), method: Method.Sampled, startBy: Edge.Sample, endBy: Edge.Sample, cgroupId: 77n };
    const stall = toEvent({ ...sampled, flags: RecordFlag.EndExact | RecordFlag.Hypervisor }, syms, who);
    expect(stall.hypervisor).toBe(true);
    expect(stall.task).toMatchObject({ pid: sampled.pid, comm: sampled.comm });
    expect(stall.task?.podUid ?? '').toBe('');
    expect(stall.enrichment).toBeNull();
    const own = toEvent({ ...sampled, flags: RecordFlag.EndExact }, syms, who);
    expect(own.hypervisor).toBeUndefined();
    expect(own.task?.podUid).toBe('u1');
    expect(irqtrace.v1.Event.decode(encodeEvent(stall)).hypervisor).toBe(true);
  });

  it('keeps uint64 fields exact past 2^53', () => {
    const big = { ...rec([]), startNs: 2n ** 63n + 5n, durationNs: 2n ** 53n + 1n, cgroupId: 2n ** 60n + 3n };
    const event = irqtrace.v1.Event.decode(encodeEvent(toEvent(big, syms)));
    expect([toBigInt(event.startNs), toBigInt(event.durationNs), toBigInt(event.task?.cgroupId)]).toEqual([big.startNs, big.durationNs, big.cgroupId]);
  });
});
