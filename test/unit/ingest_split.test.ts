// The ingest's pass-through split (operator/src/ingest/split.ts) against a
// plain reference that decodes the batch and encodes each NodeBatch with
// protobufjs: for any batch, the same publications, decoding to the same
// messages.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { irqtrace, toLong } from '@irqtrace/proto';
import { scanBatch, splitBatch } from '../../operator/src/ingest/split.js';
import type { PodDirectory } from '../../operator/src/ingest/split.js';
import { subject } from '../../operator/src/ingest/subjects.js';

const v1 = irqtrace.v1;
const pods: PodDirectory = { lookup: (uid) => (uid === 'uid-known' ? { namespace: 'shop', name: 'checkout-7d9' } : undefined) };
const RECEIVED = 1_796_000_000_000_000_000n;

/** The reference: decode, regroup, enrich, encode. */
function reference(node: string, bootId: string, bytes: Uint8Array, nodeTraces: string[]) {
  const batch = v1.EventBatch.decode(bytes);
  const withPod = (t: irqtrace.v1.ITask | null | undefined) => {
    const pod = t?.podUid && !t.podName ? pods.lookup(t.podUid) : undefined;
    return pod && t ? { ...t, podNamespace: pod.namespace, podName: pod.name } : t;
  };
  const byTrace = new Map<string, irqtrace.v1.IEvent[]>(nodeTraces.map((t) => [t, []]));
  for (const e of batch.events) {
    const event = { ...e, task: withPod(e.task) };
    for (const t of e.traces?.length ? e.traces : nodeTraces) {
      if (!byTrace.has(t)) byTrace.set(t, []);
      byTrace.get(t)?.push(event);
    }
  }
  const out: { subject: string; msgID: string; message: irqtrace.v1.INodeBatch }[] = [];
  const base = { node, bootId, seq: batch.seq, receivedUnixNs: toLong(RECEIVED) };
  for (const [trace, events] of byTrace) {
    const id = `${node}/${bootId}/${batch.seq.toString()}/${trace}`;
    if (events.length || batch.losses.length) out.push({ subject: subject(trace, node, 'events'), msgID: `${id}/events`, message: { ...base, trace, events, losses: batch.losses } });
    if (batch.histograms) out.push({ subject: subject(trace, node, 'hist'), msgID: `${id}/hist`, message: { ...base, trace, histograms: batch.histograms } });
  }
  return out.map((p) => ({ ...p, message: v1.NodeBatch.toObject(v1.NodeBatch.decode(v1.NodeBatch.encode(p.message).finish()), { longs: String, defaults: true }) }));
}

const text = fc.string({ maxLength: 12 });
const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((b) => toLong(b));
const task = fc.record({ pid: fc.nat(), comm: text, cgroupId: uint64, podUid: fc.constantFrom('', 'uid-known', 'uid-other'), podName: fc.constantFrom('', 'named') }, { requiredKeys: [] });
const event = fc.record(
  {
    cpu: fc.nat({ max: 255 }),
    durationNs: uint64,
    task,
    enablingTask: task,
    stack: fc.array(fc.record({ address: uint64, symbol: text, offset: uint64 }, { requiredKeys: ['address'] }), { maxLength: 4 }),
    traces: fc.uniqueArray(fc.constantFrom('cpus', 'nic.lines', 'other'), { maxLength: 3 }),
  },
  { requiredKeys: [] },
);
const batch = fc.record(
  {
    seq: uint64,
    events: fc.array(event, { maxLength: 6 }),
    losses: fc.array(fc.record({ stage: fc.integer({ min: 0, max: 3 }), count: uint64, reason: text }), { maxLength: 2 }),
    histograms: fc.option(fc.record({ takenNs: uint64, histograms: fc.array(fc.record({ cpu: fc.nat({ max: 8 }), count: uint64 }), { maxLength: 2 }) }), { nil: undefined }),
  },
  { requiredKeys: [] },
);

describe("the ingest's pass-through split", () => {
  it('publishes what decoding and encoding would, for any batch', () => {
    fc.assert(
      fc.property(batch, fc.uniqueArray(fc.constantFrom('cpus', 'nic.lines'), { maxLength: 2 }), (b, nodeTraces) => {
        const bytes = v1.EventBatch.encode(b).finish();
        const got = splitBatch('worker-1.example.com', 'boot-1', scanBatch(bytes), nodeTraces, pods, RECEIVED).map((p) => ({
          subject: p.subject,
          msgID: p.msgID,
          message: v1.NodeBatch.toObject(v1.NodeBatch.decode(p.data), { longs: String, defaults: true }),
        }));
        expect(got).toEqual(reference('worker-1.example.com', 'boot-1', bytes, nodeTraces));
      }),
      { numRuns: 300 },
    );
  });

  it('refuses bytes that are no batch', () => {
    expect(() => scanBatch(Uint8Array.from([0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(RangeError);
  });
});
