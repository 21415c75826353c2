import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { CountedHistogram } from '../../agent/src/daemon/counted_histogram.js';

const BUCKETS = [1e-5, 1e-4, 1e-3, 0.1];

describe('CountedHistogram', () => {
  it("exposes exactly what prom-client's own Histogram does for the same observations", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom('irqs_off', 'irq_line'), fc.oneof(fc.constantFrom(...BUCKETS, 0), fc.double({ min: 0, max: 2, noNaN: true }))), { maxLength: 50 }),
        async (observations) => {
          const ours = new Registry();
          const theirs = new Registry();
          const counted = new CountedHistogram('d_seconds', 'durations', 'kind', BUCKETS, ours);
          const reference = new Histogram({ name: 'd_seconds', help: 'durations', labelNames: ['kind'], buckets: BUCKETS, registers: [theirs] });
          for (const [kind, value] of observations) {
            counted.observer(kind)(value);
            reference.observe({ kind }, value);
          }
          // Series appear in first-observed order in both; prom-client lists them as observed.
          expect(await ours.metrics()).toBe(await theirs.metrics());
          counted.reset();
          reference.reset();
          expect((await ours.getMetricsAsJSON())[0]?.values.every((v) => v.value === 0)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
