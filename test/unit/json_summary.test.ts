// `irqtrace record --json`'s closing lines: each histogram, then a summary.
import { describe, expect, it } from 'vitest';
import { Backend, Kind, Method } from '@irqtrace/agent';
import type { HistItem } from '@irqtrace/agent';
import { histogramJson, summaryJson } from '../../agent/src/cli/json_summary.js';

function hist(kind: Kind, method: Method, counts: Record<number, bigint>, cpu = 1, irq = 0): HistItem {
  const buckets = Array.from({ length: 64 }, (_, i) => counts[i] ?? 0n);
  return { type: 'hist', kind, method, backend: Backend.Ebpf, cpu, irq, count: buckets.reduce((a, b) => a + b, 0n), sumNs: 123_456_789n, maxNs: 9_000_000n, buckets };
}

describe('record --json: histograms and summary', () => {
  it('gives a histogram its non-empty log2 buckets as [from, to) in ns, 64-bit values as strings', () => {
    expect(histogramJson(hist(Kind.IrqsOff, Method.Sampled, { 20: 3n, 23: 1n }), 40_000n)).toEqual({
      type: 'histogram',
      kind: 'irqs-off',
      cpu: 1,
      method: 'sampled',
      count: '4',
      sumNs: '123456789',
      maxNs: '9000000',
      samples: '40000',
      buckets: [
        { fromNs: '1048576', toNs: '2097152', count: '3' },
        { fromNs: '8388608', toNs: '16777216', count: '1' },
      ],
    });
  });

  it("names an IRQ line's histogram by its IRQ, gives samples only to a sampled one, and none for an empty one", () => {
    expect(histogramJson(hist(Kind.IrqLine, Method.Exact, { 12: 1n }, 0, 24), 5n)).toMatchObject({ kind: 'irq-line', irq: 24, method: 'exact' });
    expect(histogramJson(hist(Kind.IrqLine, Method.Exact, { 12: 1n }, 0, 24), 5n)).not.toHaveProperty('cpu');
    expect(histogramJson(hist(Kind.IrqsOff, Method.Hybrid, { 12: 1n }), 5n)).not.toHaveProperty('samples');
    expect(histogramJson(hist(Kind.IrqsOff, Method.Exact, {}))).toBeUndefined();
  });

  it('types the summary, so that a reader tells it from the events (which have no type)', () => {
    expect(summaryJson({ source: 'agent', seconds: 25, violationsShown: 2, lost: { reader: '0' } })).toEqual({ type: 'summary', source: 'agent', seconds: 25, violationsShown: 2, lost: { reader: '0' } });
  });
});
