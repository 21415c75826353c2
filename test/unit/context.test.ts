// A section of interrupt code is that code's: the record's context decoded,
// named for people (irq 24 handler (nvme0q1), hrtimer fn, softirq NET_RX),
// carried by the event without the interrupted task's pod, and shown in the
// status instead of the task. The counters say what runs, as numbers.
import { describe, expect, it } from 'vitest';
import { irqtrace, toLong } from '@irqtrace/proto';
import { ABI_VERSION, COUNTERS, Context, Kallsyms, Kind, MAGIC, Method, RECORD, Running, decodeAll, toEvent } from '@irqtrace/agent';
import type { SectionRecord } from '@irqtrace/agent';
import { ContextNamer } from '../../agent/src/pipeline/context.js';
import { encodeEvent } from '../../agent/src/pipeline/encode.js';
import { TraceAggregate } from '../../operator/src/status/aggregate.js';

const pb = irqtrace.v1;
const syms = Kallsyms.parse(['ffffffff81000000 T _stext', 'ffffffff81200000 t nvme_irq', 'ffffffffa0001000 t irqburn_hardirq_fn\t[irqtrace_selftest]'].join('\n'));

function recordBytes(context: Context, nr: number, fn: bigint): Buffer {
  const b = Buffer.alloc(RECORD.size);
  const f = RECORD.fields;
  b.writeUInt32LE(MAGIC.record, 0);
  b.writeUInt16LE(ABI_VERSION, 4);
  b.writeUInt16LE(b.length, 6);
  b.writeUInt8(Kind.IrqsOff, f.kind.offset);
  b.writeUInt8(Method.Exact, f.method.offset);
  b.writeUInt8(1, f.backend.offset);
  b.writeUInt32LE(777, f.pid.offset);
  b.write('checkout', f.comm.offset, 'latin1');
  b.writeBigUInt64LE(2_000_000n, f.duration_ns.offset);
  b.writeUInt8(context, f.context.offset);
  b.writeUInt32LE(nr, f.context_nr.offset);
  b.writeBigUInt64LE(fn, f.context_fn.offset);
  return b;
}

const decoded = (context: Context, nr: number, fn: bigint) => decodeAll(recordBytes(context, nr, fn))[0] as SectionRecord;
const lines = new Map([[24, { irq: 24, actions: ['nvme0q1'] }]]);

describe('the context of a section', () => {
  it('is decoded from the record', () => {
    expect(decoded(Context.Hardirq, 24, 0xffffffff81200000n)).toMatchObject({ context: Context.Hardirq, contextNr: 24, contextFn: 0xffffffff81200000n });
    expect(decoded(Context.Task, 0, 0n).context).toBe(Context.Task);
  });

  it('is named as people say it', () => {
    const namer = new ContextNamer();
    expect(namer.of(decoded(Context.Hardirq, 24, 0xffffffff81200000n), syms, lines)?.summary).toBe('irq 24 handler (nvme0q1)');
    // No action name known: the handler's.
    expect(namer.of(decoded(Context.Hardirq, 30, 0xffffffff81200000n), syms, lines)?.summary).toBe('irq 30 handler (nvme_irq)');
    expect(namer.of(decoded(Context.Timer, 0, 0xffffffffa0001000n), syms, lines)?.summary).toBe('hrtimer irqburn_hardirq_fn [irqtrace_selftest]');
    expect(namer.of(decoded(Context.Softirq, 3, 0n), syms, lines)).toMatchObject({ kind: pb.ContextKind.CONTEXT_KIND_SOFTIRQ, softirq: 'NET_RX', summary: 'softirq NET_RX' });
    expect(namer.of(decoded(Context.Task, 0, 0n), syms, lines)).toBeNull();
    // One object per handler, shared by its events.
    expect(namer.of(decoded(Context.Softirq, 3, 0n), syms, lines)).toBe(namer.of(decoded(Context.Softirq, 3, 0n), syms, lines));
  });

  it('goes into the event instead of the interrupted task\'s pod, and the encoder carries it', () => {
    const rec = decoded(Context.Hardirq, 24, 0xffffffff81200000n);
    const context = new ContextNamer().of(rec, syms, lines);
    const pod = { path: '/kubepods/pod1234', podUid: '1234', containerId: 'abc', runtime: 'containerd', qos: 'burstable' } as never;
    const event = toEvent(rec, syms, { task: pod, context });
    expect(event.task).toMatchObject({ pid: 777, comm: 'checkout', podUid: '', containerId: '' });
    expect(pb.Event.decode(encodeEvent(event)).context?.summary).toBe('irq 24 handler (nvme0q1)');
    // A task's section keeps its pod.
    expect(toEvent(decoded(Context.Task, 0, 0n), syms, { task: pod }).task).toMatchObject({ podUid: '1234' });
  });

  it('is what the status names, not the task or a pod', () => {
    const a = new TraceAggregate('t');
    a.applyBatch(1, {
      node: 'n1', bootId: 'b', seq: toLong(1n), trace: 't', receivedUnixNs: toLong(BigInt(Date.now()) * 1_000_000n),
      events: [{ kind: pb.SectionKind.SECTION_KIND_IRQS_OFF, durationNs: toLong(2_000_000n), task: { pid: 777, comm: 'checkout', podUid: 'u', podNamespace: 'shop', podName: 'checkout' }, context: { kind: pb.ContextKind.CONTEXT_KIND_HARDIRQ, irq: 24, summary: 'irq 24 handler (nvme0q1)' } }],
    });
    const s = a.status(Date.now(), 1);
    expect(s.worstOffenders[0]).toMatchObject({ context: 'irq 24 handler (nvme0q1)', comm: 'checkout' });
    expect(s.worstOffenders[0]).not.toHaveProperty('pod');
    expect(s.worst).toBe('2.00ms irq 24 handler (nvme0q1) on n1');
  });
});

describe('the counters', () => {
  it('say the method running and what else runs, as numbers', () => {
    const b = Buffer.alloc(COUNTERS.size);
    b.writeUInt32LE(MAGIC.counters, 0);
    b.writeUInt16LE(ABI_VERSION, 4);
    b.writeUInt16LE(b.length, 6);
    b.writeUInt8(1, COUNTERS.fields.backend.offset);
    b.writeUInt8(Method.Sampled, COUNTERS.fields.irqs_off_method.offset);
    b.writeUInt8(Running.Softirqs | Running.IrqLines, COUNTERS.fields.running.offset);
    b.writeBigUInt64LE(12_345n, COUNTERS.fields.samples.offset);
    expect(decodeAll(b)[0]).toMatchObject({ irqsOffMethod: Method.Sampled, running: 3, samples: 12_345n });
    b.writeUInt8(0, COUNTERS.fields.irqs_off_method.offset);
    expect(decodeAll(b)[0]).toMatchObject({ irqsOffMethod: undefined });
  });
});
