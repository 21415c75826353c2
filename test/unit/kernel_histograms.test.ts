// The kernel's log2 histograms as one Prometheus histogram per kind (irqtrace_kernel_section_duration_seconds).
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Backend, Kind, Method } from '@irqtrace/agent';
import type { HistItem } from '@irqtrace/agent';
import { KERNEL_BUCKET_BOUNDS, KernelHistograms } from '../../agent/src/daemon/kernel_histograms.js';

const NAME = 'irqtrace_kernel_section_duration_seconds';

function hist(kind: Kind, cpu: number, counts: Record<number, number>, irq = 0): HistItem {
  const buckets = Array.from({ length: 64 }, (_, i) => BigInt(counts[i] ?? 0));
  // Each count at its bucket's lower bound: the sum the kernel would have.
  const sumNs = buckets.reduce((a, b, i) => a + b * 2n ** BigInt(i), 0n);
  return { type: 'hist', kind, method: Method.Exact, backend: Backend.Kmod, cpu, irq, count: buckets.reduce((a, b) => a + b, 0n), sumNs, maxNs: 0n, buckets };
}

async function exposition(hists: HistItem[]): Promise<Map<string, number>> {
  const registry = new Registry();
  const metric = new KernelHistograms(NAME, 'help', registry);
  metric.update(hists);
  const text = await registry.metrics();
  expect(text).toContain(`# TYPE ${NAME} histogram`);
  return new Map([...text.matchAll(/^(\S+?)(\{.*\})? (\S+)$/gm)].map((m) => [`${m[1] ?? ''}${m[2] ?? ''}`, Number(m[3])]));
}

describe('the kernel histograms in Prometheus', () => {
  it('sums CPUs per kind, cumulative at le = 2^(i+1) ns, what is below 2 µs in the first bucket, above 69 s in +Inf', async () => {
    const m = await exposition([hist(Kind.IrqsOff, 0, { 3: 7, 12: 5, 20: 2 }), hist(Kind.IrqsOff, 1, { 20: 1, 40: 1 }), hist(Kind.IrqLine, 0, { 25: 3 }, 4)]);
    const bucket = (kind: string, le: string) => m.get(`${NAME}_bucket{le="${le}",kind="${kind}"}`);
    expect(bucket('irqs-off', '0.000002048')).toBe(7);
    expect(bucket('irqs-off', '0.000004096')).toBe(7);
    expect(bucket('irqs-off', '0.000008192')).toBe(12);
    expect(bucket('irqs-off', '0.002097152')).toBe(15);
    expect(bucket('irqs-off', '68.719476736')).toBe(15);
    expect(bucket('irqs-off', '+Inf')).toBe(16);
    expect(m.get(`${NAME}_count{kind="irqs-off"}`)).toBe(16);
    expect(m.get(`${NAME}_sum{kind="irqs-off"}`)).toBeCloseTo((7 * 8 + 5 * 4096 + 3 * 2 ** 20 + 2 ** 40) / 1e9, 9);
    expect(bucket('irq-line', '+Inf')).toBe(3);
    // No series for a kind that measured nothing, and no CPU or IRQ label.
    expect([...m.keys()].filter((k) => k.includes('softirqs-off') || k.includes('cpu=') || k.includes('irq='))).toEqual([]);
    expect([...m.keys()].filter((k) => k.startsWith(`${NAME}_bucket{`) && k.endsWith(`kind="irqs-off"}`))).toHaveLength(KERNEL_BUCKET_BOUNDS.length + 1);
  });

  it('keeps buckets monotonic and +Inf equal to the count for any histograms', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.dictionary(fc.integer({ min: 0, max: 63 }).map(String), fc.integer({ min: 0, max: 1_000_000 })), { minLength: 1, maxLength: 8 }), async (cpus) => {
        const m = await exposition(cpus.map((c, cpu) => hist(Kind.IrqsOff, cpu, Object.fromEntries(Object.entries(c).map(([k, v]) => [Number(k), v])))));
        const buckets = [...m.entries()].filter(([k]) => k.startsWith(`${NAME}_bucket`)).map(([, v]) => v);
        for (let i = 1; i < buckets.length; i++) expect(buckets[i]).toBeGreaterThanOrEqual(buckets[i - 1] ?? 0);
        const total = cpus.reduce((a, c) => a + Object.values(c).reduce((x, y) => x + y, 0), 0);
        expect(buckets.at(-1)).toBe(total);
        expect(m.get(`${NAME}_count{kind="irqs-off"}`)).toBe(total);
      }),
      { numRuns: 50 },
    );
  });

  it('follows the kernel: a restarted kernel side starts from zero (a counter reset to Prometheus)', async () => {
    const registry = new Registry();
    const metric = new KernelHistograms(NAME, 'help', registry);
    metric.update([hist(Kind.IrqsOff, 0, { 20: 5 })]);
    metric.update([hist(Kind.IrqsOff, 0, { 20: 1 })]);
    expect(await registry.metrics()).toMatch(new RegExp(`^${NAME}_count\\{kind="irqs-off"\\} 1$`, 'm'));
  });
});
