// The kernel side's own histograms as Prometheus histograms: every section it measured, under
// the threshold too, where irqtrace_section_duration_seconds has only the sections over it. The
// whole distribution is what an SRE watches (a p99.9 creeping up before anything violates).
//
// One series set per kind, summed over CPUs and IRQ lines: a per-CPU label would make buckets x
// CPUs x kinds series per node (tens of thousands on a large machine), which is how Prometheus
// users of per-object labels drown. The CLI and the status keep the per-CPU view.
//
// The kernel's bucket i holds [2^i, 2^(i+1)) ns, so its cumulative count is exact at
// le = 2^(i+1) ns; below 2^FIRST ns the buckets go into the first, above 2^LAST into +Inf, which
// keeps each kind at LAST - FIRST + 2 buckets. Like CountedHistogram, the Registry formats it as
// its own: it asks a metric only for name, help, type, get() and reset().
import type { Histogram, Registry } from 'prom-client';
import { histogramValues } from './counted_histogram.js';
import type { Values } from './counted_histogram.js';
import { KIND_NAMES } from '../cli/format.js';
import type { HistItem } from '../records/decode.js';
import type { Kind } from '../records/layout.js';

/** The first bucket's upper bound is 2^(FIRST + 1) ns (2.05 µs); the last finite one 2^(LAST + 1) ns (68.7 s). */
const FIRST = 10;
const LAST = 35;

/** The upper bounds, in seconds, of the buckets exported. */
export const KERNEL_BUCKET_BOUNDS: readonly number[] = Array.from({ length: LAST - FIRST + 1 }, (_, i) => 2 ** (FIRST + i + 1) / 1e9);

/**
 * The kernel's buckets as the exported ones: up to FIRST in the first, past LAST in +Inf. +Inf
 * and the count are every bucket's (not the kernel's count, read apart from them a moment later
 * on a busy CPU: the buckets must stay monotonic).
 */
function exportedCounts(buckets: readonly bigint[]): number[] {
  const counts = new Array<number>(LAST - FIRST + 2).fill(0);
  buckets.forEach((n, i) => {
    const at = Math.min(Math.max(i - FIRST, 0), LAST - FIRST + 1);
    counts[at] = (counts[at] ?? 0) + Number(n);
  });
  return counts;
}

interface Summed {
  /** Per kernel bucket, summed over CPUs and lines. */
  buckets: bigint[];
  sumNs: bigint;
}

export class KernelHistograms {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private latest = new Map<Kind, Summed>();

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Histogram);
  }

  /** The kernel's histograms as read now (cumulative since its side started: a restart is a counter reset). */
  update(hists: readonly HistItem[]): void {
    const latest = new Map<Kind, Summed>();
    for (const h of hists) {
      let s = latest.get(h.kind);
      if (!s) latest.set(h.kind, (s = { buckets: [], sumNs: 0n }));
      h.buckets.forEach((b, i) => { s.buckets[i] = (s.buckets[i] ?? 0n) + b; });
      s.sumNs += h.sumNs;
    }
    this.latest = latest;
  }

  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Values }> {
    const values = [...this.latest].flatMap(([kind, s]) => histogramValues(this.name, { kind: KIND_NAMES[kind] }, KERNEL_BUCKET_BOUNDS, exportedCounts(s.buckets), Number(s.sumNs) / 1e9));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    this.latest.clear();
  }
}
