// Several traces on one node: merged for the kernel, split again per event.
import { describe, expect, it } from 'vitest';
import { irqtrace, toLong } from '@irqtrace/proto';
import { Kind, TraceMatcher, TraceTimeline, mergeTraces, traceFromProto, traceToProto, tracesOf } from '@irqtrace/agent';
import type { Trace } from '@irqtrace/agent';

const pb = irqtrace.v1;
const base: Trace = { name: 'x', all: true, irqs: [], thresholdNs: 1_000_000n, method: 'auto', backend: 'auto', periodNs: 1_000_000n, softirqs: false, stacks: false, endUnixNs: 0n };

describe('traces on one node', () => {
  it('reads a TraceConfig, defaults filled', () => {
    const t = traceFromProto({ name: 'lab', target: { irqs: [24, 25] }, thresholdNs: toLong(500_000n), method: pb.MethodChoice.METHOD_CHOICE_SAMPLED, backend: pb.BackendChoice.BACKEND_CHOICE_EBPF });
    expect(t).toMatchObject({ name: 'lab', all: false, irqs: [24, 25], thresholdNs: 500_000n, method: 'sampled', backend: 'ebpf', periodNs: 1_000_000n, stacks: true });
  });

  it('writes a trace back as the TraceConfig it was read from (what the agent tells its local readers)', () => {
    for (const t of [base, { ...base, name: 'lab', all: false, irqs: [24], irqNames: ['nvme0q*'], method: 'sampled' as const, backend: 'ebpf' as const, softirqs: true, stacks: true, endUnixNs: 1_800_000_000_000_000_000n }]) {
      expect(traceFromProto(pb.TraceConfig.decode(pb.TraceConfig.encode(traceToProto(t)).finish()))).toEqual({ irqNames: [], ...t });
    }
  });

  it('merges to the lowest threshold and the union of targets', () => {
    const merged = mergeTraces([
      { ...base, name: 'a', all: false, irqs: [30, 24], thresholdNs: 200_000n },
      { ...base, name: 'b', all: false, irqs: [24, 11], thresholdNs: 2_000_000n, stacks: true, periodNs: 500_000n },
    ]);
    expect(merged?.kernel).toMatchObject({ method: 'off', irqs: [11, 24, 30], thresholdNs: 200_000n, periodNs: 500_000n, stacks: true });
    expect(mergeTraces([{ ...base, method: 'exact', softirqs: true }, { ...base, all: false, irqs: [3] }])?.kernel).toMatchObject({ method: 'exact', irqs: 'all', softirqs: true });
    expect(mergeTraces([{ ...base, method: 'exact' }, { ...base, method: 'sampled' }])?.kernel.method).toBe('auto');
    expect(mergeTraces([{ ...base, backend: 'kmod' }, { ...base, backend: 'ebpf' }])?.backend).toBe('auto');
    expect(mergeTraces([{ ...base, backend: 'ebpf' }, base])?.backend).toBe('ebpf');
  });

  it('leaves nothing to run when no trace is live', () => {
    expect(mergeTraces([])).toBeUndefined();
    expect(mergeTraces([{ ...base, endUnixNs: 10n }], 20n)).toBeUndefined();
  });

  it('gives each event to the traces it matches', () => {
    const traces: Trace[] = [
      { ...base, name: 'cpus', thresholdNs: 1_000_000n },
      { ...base, name: 'nic', all: false, irqs: [24], thresholdNs: 100_000n },
      { ...base, name: 'soft', softirqs: true, thresholdNs: 100_000n },
    ];
    const irqsOff = Kind.IrqsOff;
    expect(tracesOf({ kind: irqsOff, irq: 0, durationNs: 2_000_000n }, traces)).toEqual(['cpus', 'soft']);
    expect(tracesOf({ kind: irqsOff, irq: 0, durationNs: 500_000n }, traces)).toEqual(['soft']);
    expect(tracesOf({ kind: Kind.IrqLine, irq: 24, durationNs: 200_000n }, traces)).toEqual(['nic', 'soft']);
    expect(tracesOf({ kind: Kind.IrqLine, irq: 25, durationNs: 200_000n }, traces)).toEqual(['soft']);
    expect(tracesOf({ kind: Kind.SoftirqsOff, irq: 0, durationNs: 5_000_000n }, traces)).toEqual(['soft']);
  });

  it('matches many events with one answer per set of traces, ended traces left out', () => {
    // More traces than a 32-bit mask holds, every third one ended at t = 1 s.
    const traces: Trace[] = Array.from({ length: 40 }, (_, i) => ({ ...base, name: `t${i}`, thresholdNs: BigInt(i) * 1000n, endUnixNs: i % 3 === 0 ? 1_000_000_000n : 0n }));
    const matcher = new TraceMatcher(traces);
    const event = { kind: Kind.IrqsOff, irq: 0, durationNs: 35_500n };
    const before = matcher.match(event, 999);
    expect(before).toEqual(traces.slice(0, 36).map((t) => t.name));
    expect(matcher.match({ ...event }, 999)).toBe(before);
    expect(matcher.match(event, 1000)).toEqual(traces.slice(0, 36).filter((_, i) => i % 3 !== 0).map((t) => t.name));
    expect(matcher.match({ ...event, durationNs: 0n }, 2000)).toEqual([]);
  });

  it('judges a record by the traces in force when its section ended, among those that remain', () => {
    const timeline = new TraceTimeline();
    const at = (endNs: bigint, durationNs = 2_000_000n) => timeline.match({ kind: Kind.IrqsOff, irq: 0, startNs: endNs - durationNs, durationNs });
    expect(at(10_000_000n)).toEqual([]);
    // The first configuration covers whatever comes: the kernel side starts after it.
    timeline.set([{ ...base, name: 'a' }, { ...base, name: 'gone' }], 50_000_000n);
    expect(at(10_000_000n)).toEqual(['a', 'gone']);
    // At t = 100 ms 'a' is raised to 60 s, 'gone' is deleted and 'late' begins.
    timeline.set([{ ...base, name: 'a', thresholdNs: 60_000_000_000n }, { ...base, name: 'late' }], 100_000_000n);
    expect(timeline.current.map((t) => t.name)).toEqual(['a', 'late']);
    // A record still on its way when that happened counts as it did then; a deleted trace takes nothing.
    expect(at(99_999_999n)).toEqual(['a']);
    expect(at(100_000_000n)).toEqual(['late']);
    expect(at(200_000_000n)).toEqual(['late']);
    // A configuration stamped before the last one applies from the last one's time: the order stays.
    timeline.set([{ ...base, name: 'late', thresholdNs: 60_000_000_000n }], 90_000_000n);
    expect(at(100_000_000n)).toEqual([]);
    expect(at(99_999_999n)).toEqual([]);
  });

  it('keeps the last 16 configurations: older records are judged by the oldest kept', () => {
    const timeline = new TraceTimeline();
    for (let i = 0; i < 20; i++) timeline.set([{ ...base, name: 't', thresholdNs: BigInt(i + 1) * 1_000_000n }], BigInt(i) * 1_000_000_000n);
    const match = (endS: number, durationMs: number) => timeline.match({ kind: Kind.IrqsOff, irq: 0, startNs: BigInt(endS) * 1_000_000_000n - BigInt(durationMs) * 1_000_000n, durationNs: BigInt(durationMs) * 1_000_000n });
    // Kept: the configurations from t = 4 s (threshold 5 ms) to t = 19 s (20 ms).
    expect(match(19, 20)).toEqual(['t']);
    expect(match(19, 19)).toEqual([]);
    expect(match(12, 13)).toEqual(['t']);
    expect(match(12, 12)).toEqual([]);
    expect(match(1, 5)).toEqual(['t']);
    expect(match(1, 4)).toEqual([]);
  });
});
