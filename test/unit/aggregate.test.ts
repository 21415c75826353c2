import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { irqtrace, toLong } from '@irqtrace/proto';
import { MAX_STATUS_NODES, MAX_WORST } from '@irqtrace/operator';
import { TraceAggregate } from '../../operator/src/status/aggregate.js';
import type { NodeRecord } from '../../operator/src/status/aggregate.js';

const pb = irqtrace.v1;
const NOW = Date.parse('2026-11-30T12:00:00Z');
const ns = (ms: number) => toLong(BigInt(ms) * 1_000_000n);

function must<T>(v: T | undefined): T {
  if (v === undefined) throw new Error('missing');
  return v;
}

function batch(node: string, seq: number, durationsUs: number[], o: { boot?: string; lost?: number; at?: number } = {}): irqtrace.v1.INodeBatch {
  return {
    node,
    bootId: o.boot ?? 'boot-1',
    seq: toLong(BigInt(seq)),
    trace: 't',
    receivedUnixNs: ns(o.at ?? NOW - 1000),
    events: durationsUs.map((us, i) => ({
      kind: pb.SectionKind.SECTION_KIND_IRQS_OFF,
      cpu: i,
      durationNs: toLong(BigInt(us) * 1000n),
      task: { pid: 100 + i, comm: 'irqburn', podUid: 'u1', podNamespace: 'shop', podName: 'checkout' },
      stack: [{ address: toLong(0xffffffffa0000010n), symbol: 'irqburn_irqs_off', offset: toLong(0x10n), module: 'irqtrace_selftest' }],
    })),
    losses: o.lost ? [{ stage: pb.LossStage.LOSS_STAGE_KERNEL_RING, count: toLong(BigInt(o.lost)) }] : [],
  };
}

describe('per-trace aggregation of the event stream', () => {
  it('counts each batch once: replayed messages and re-sent batches are skipped', () => {
    const a = new TraceAggregate('t');
    expect(a.applyBatch(1, batch('n1', 1, [600, 900], { lost: 2 }))).toBe(true);
    expect(a.applyBatch(2, batch('n1', 2, [1500]))).toBe(true);
    // After a restart the consumer redelivers what was not acked: same stream sequences.
    expect(a.applyBatch(2, batch('n1', 2, [1500]))).toBe(false);
    // A re-send stored again after JetStream's duplicate window: a new stream sequence, an old batch.
    expect(a.applyBatch(7, batch('n1', 1, [600, 900], { lost: 2 }))).toBe(false);
    // A new boot of the node starts its batches from 1 again.
    expect(a.applyBatch(8, batch('n1', 1, [700], { boot: 'boot-2' }))).toBe(true);
    const s = a.status(NOW, 3);
    expect(s).toMatchObject({ violations: 4, maxDurationNs: 1_500_000, lost: 2, nodesReporting: 1, nodesSummary: '1/3' });
    expect(s.worst).toBe('1.50ms shop/checkout (irqburn/100) on n1');
    expect(s.worstOffenders[0]).toMatchObject({ node: 'n1', durationNs: 1_500_000, pod: 'shop/checkout', topFrames: ['irqburn_irqs_off+0x10 [irqtrace_selftest]'] });
    expect(s.nodes[0]).toMatchObject({ name: 'n1', violations: 4, lost: 2, phase: 'Running', lastViolation: { durationNs: 700_000 } });
    expect(s.conditions.find((c) => c.type === 'Violating')).toMatchObject({ status: 'True', reason: 'ThresholdExceeded' });
  });

  it("counts a host's stall apart: never a violation, the node listed with it", () => {
    const a = new TraceAggregate('t');
    const b = batch('n1', 1, [900, 8000, 700]);
    // The longest and the last: the steal clock says the host took them.
    Object.assign(must(b.events?.[1]), { method: pb.Method.METHOD_SAMPLED, hypervisor: true });
    expect(a.applyBatch(1, b)).toBe(true);
    expect(a.applyBatch(2, batch('n2', 1, [500]))).toBe(true);
    const stalled = batch('n3', 1, [4000]);
    Object.assign(must(stalled.events?.[0]), { hypervisor: true });
    expect(a.applyBatch(3, stalled)).toBe(true);
    const s = a.status(NOW, 3);
    expect(s).toMatchObject({ violations: 3, maxDurationNs: 900_000, hypervisorStalls: 2 });
    expect(s.worstOffenders.map((w) => w.durationNs)).toEqual([900_000, 700_000, 500_000]);
    expect(s.nodes.find((n) => n.name === 'n1')).toMatchObject({ violations: 2, hypervisorStalls: 1, lastViolation: { durationNs: 700_000 } });
    // A node whose only sections over the threshold were the host's: listed, with no violation.
    const n3 = must(s.nodes.find((n) => n.name === 'n3'));
    expect(n3).toMatchObject({ violations: 0, hypervisorStalls: 1 });
    expect(n3.lastViolation).toBeUndefined();
  });

  it('says of each violation how it was measured and how exact its ends are', () => {
    const a = new TraceAggregate('t');
    const b = batch('n1', 1, [2000, 3000]);
    const [hybrid, sampled] = b.events ?? [];
    Object.assign(must(hybrid), {
      method: pb.Method.METHOD_HYBRID,
      start: { source: pb.EdgeSource.EDGE_SOURCE_LOCK, exact: true },
      end: { source: pb.EdgeSource.EDGE_SOURCE_SAMPLE, exact: true },
    });
    Object.assign(must(sampled), {
      method: pb.Method.METHOD_SAMPLED,
      errorBoundNs: ns(1),
      start: { source: pb.EdgeSource.EDGE_SOURCE_SAMPLE, exact: false },
      end: { source: pb.EdgeSource.EDGE_SOURCE_SAMPLE, exact: true },
    });
    a.applyBatch(1, b);
    expect(a.status(NOW, 1).worstOffenders).toMatchObject([
      { durationNs: 3_000_000, method: 'sampled', ends: '±1.00ms/exact' },
      { durationNs: 2_000_000, method: 'hybrid', ends: 'exact/exact' },
    ]);
    // An event of an agent that says no method (none before it did): neither field.
    const old = new TraceAggregate('t');
    old.applyBatch(1, batch('n1', 1, [2000]));
    expect(old.status(NOW, 1).worstOffenders[0]).not.toHaveProperty('ends');
  });

  it('lists the longest sections anywhere as worst offenders, several from one node if so', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 8 })), { minLength: 1, maxLength: 30 }), (batches) => {
        const a = new TraceAggregate('t');
        const seqs = [0, 0, 0, 0];
        batches.forEach(([node, us], i) => a.applyBatch(i + 1, batch(`n${node}`, (seqs[node] = (seqs[node] ?? 0) + 1), us)));
        const want = batches.flatMap(([, us]) => us).sort((x, y) => y - x).slice(0, MAX_WORST).map((us) => us * 1000);
        expect(a.status(NOW, 4).worstOffenders.map((v) => v.durationNs)).toEqual(want);
      }),
    );
  });

  it('says which nodes cannot trace or stopped reporting', () => {
    const a = new TraceAggregate('t');
    a.applyState(1, { node: 'n1', connection: pb.NodeState.Connection.CONNECTION_CONNECTED, unixNs: ns(NOW - 1000), backend: { phase: pb.BackendState.Phase.PHASE_FAILED, reason: 'no kprobes in this kernel' } });
    expect(a.status(NOW, 1).conditions.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'True', reason: 'BackendUnsupported', message: '1 node cannot trace: n1: no kprobes in this kernel' });
    const b = new TraceAggregate('t');
    b.applyBatch(1, batch('n2', 1, [600], { at: NOW - 120_000 }));
    b.applyState(2, { node: 'n3', connection: pb.NodeState.Connection.CONNECTION_HEARTBEAT, unixNs: ns(NOW - 5000), backend: { phase: pb.BackendState.Phase.PHASE_RUNNING, backend: pb.Backend.BACKEND_KMOD, irqsOffMethod: pb.Method.METHOD_EXACT } });
    const s = b.status(NOW, 2);
    expect(s.conditions.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'True', reason: 'NodesNotReporting', message: '1 node not heard from in 60s: n2' });
    expect(s.nodes.map((n) => [n.name, n.phase])).toEqual([['n2', 'NotReporting']]);
    expect(s.nodesReporting).toBe(1);
  });

  it('gives each node the method its sections for this trace are measured with', () => {
    const a = new TraceAggregate('t');
    a.applyBatch(1, batch('n1', 1, [600]));
    // A node whose only trace is of IRQ lines: no irqs-off method, the lines hooked.
    a.applyState(2, { node: 'n1', connection: pb.NodeState.Connection.CONNECTION_HEARTBEAT, unixNs: ns(NOW - 1000), backend: { phase: pb.BackendState.Phase.PHASE_RUNNING, backend: pb.Backend.BACKEND_EBPF, irqLines: true } });
    expect(a.status(NOW, 1, 'irq_lines').nodes[0]).toMatchObject({ backend: 'ebpf', method: 'exact' });
    a.applyState(3, { node: 'n1', connection: pb.NodeState.Connection.CONNECTION_HEARTBEAT, unixNs: ns(NOW - 500), backend: { phase: pb.BackendState.Phase.PHASE_RUNNING, backend: pb.Backend.BACKEND_EBPF, irqsOffMethod: pb.Method.METHOD_SAMPLED, irqLines: true } });
    expect(a.status(NOW, 1, 'all').nodes[0]).toMatchObject({ method: 'sampled' });
    expect(a.status(NOW, 1, 'irq_lines').nodes[0]).toMatchObject({ method: 'exact' });
    a.applyState(4, { node: 'n1', connection: pb.NodeState.Connection.CONNECTION_HEARTBEAT, unixNs: ns(NOW - 100), backend: { phase: pb.BackendState.Phase.PHASE_RUNNING, backend: pb.Backend.BACKEND_EBPF, irqsOffMethod: pb.Method.METHOD_SAMPLED } });
    expect(a.status(NOW, 1, 'irq_lines').nodes[0]).toMatchObject({ method: 'unspecified' });
    // A record from an older operator's checkpoint, restored as the aggregator does: lines unknown.
    const restored = new TraceAggregate('t');
    restored.nodes.set('n1', { ...(JSON.parse(JSON.stringify(a.nodes.get('n1'))) as NodeRecord), backend: { phase: 'running', backend: 'ebpf', method: 'sampled', reason: '' } });
    expect(restored.status(NOW, 1, 'irq_lines').nodes[0]).not.toHaveProperty('method');
    expect(restored.status(NOW, 1, 'all').nodes[0]).toMatchObject({ method: 'sampled' });
  });

  it('keeps the status far below the object size limit with 5,000 nodes in violation', () => {
    const a = new TraceAggregate('t');
    for (let i = 0; i < 5000; i++) a.applyBatch(i + 1, batch(`node-${String(i).padStart(4, '0')}.rack-${i % 40}.dc1.example.com`, 1, [500 + i, 600 + i, 700 + i], { lost: i % 3 }));
    const s = a.status(NOW, 5000);
    expect(s.nodes).toHaveLength(MAX_STATUS_NODES);
    expect(s.nodesOmitted).toBe(5000 - MAX_STATUS_NODES);
    expect(s.nodes[0]?.name).toBe('node-4999.rack-39.dc1.example.com');
    expect(s.violations).toBe(15_000);
    // The whole object as etcd stores it: spec, metadata and both managers' status.
    const object = { apiVersion: 'irqtrace.io/v1alpha1', kind: 'IrqTrace', metadata: { name: 't', managedFields: [{ manager: 'irqtrace-status', fieldsV1: {} }] }, spec: { target: { all: true } }, status: s };
    const bytes = Buffer.byteLength(JSON.stringify(object));
    console.log(`status of 5,000 violating nodes: ${bytes} bytes`);
    expect(bytes).toBeLessThan(256 * 1024);
  });
});
