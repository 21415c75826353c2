// A Prometheus histogram with one label, counted in plain arrays: observe()
// is a bucket search and two additions. prom-client's own Histogram hashes
// the labels on every observe, which at a storm's rate of events costs more
// than the rest of their accounting. Its Registry formats this one as its own:
// it asks a metric only for name, help, type, get() and reset().
import type { Histogram, Registry } from 'prom-client';

export type Values = Awaited<ReturnType<Histogram['get']>>['values'];

/**
 * One series of a histogram as the Registry formats it: its cumulative buckets at upperBounds
 * and +Inf, from counts per bucket (not cumulative, the last one past every bound), its sum and
 * its count (every bucket's).
 */
export function histogramValues(name: string, labels: Record<string, string>, upperBounds: readonly number[], counts: ArrayLike<number>, sum: number): Values {
  const values: Values = [];
  let cumulative = 0;
  for (let i = 0; i <= upperBounds.length; i++) {
    cumulative += counts[i] ?? 0;
    const le = i < upperBounds.length ? (upperBounds[i] ?? 0) : '+Inf';
    // le first, as prom-client's own Histogram writes it.
    values.push({ metricName: `${name}_bucket`, labels: { le, ...labels }, value: cumulative });
  }
  values.push({ metricName: `${name}_sum`, labels, value: sum });
  values.push({ metricName: `${name}_count`, labels, value: cumulative });
  return values;
}

interface Series {
  /** Per bucket (not cumulative); the last one is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

export class CountedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelName: string,
    private readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Histogram);
  }

  /** The observer of one label value (looked up once, used per event). */
  observer(labelValue: string): (value: number) => void {
    let s = this.series.get(labelValue);
    if (!s) {
      s = { counts: new Float64Array(this.upperBounds.length + 1), sum: 0, count: 0 };
      this.series.set(labelValue, s);
    }
    const series = s;
    const bounds = this.upperBounds;
    return (value) => {
      let i = 0;
      while (i < bounds.length && value > (bounds[i] ?? Infinity)) i++;
      series.counts[i] = (series.counts[i] ?? 0) + 1;
      series.sum += value;
      series.count++;
    };
  }

  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Values }> {
    const values = [...this.series].flatMap(([labelValue, s]) => histogramValues(this.name, { [this.labelName]: labelValue }, this.upperBounds, s.counts, s.sum));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    for (const s of this.series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
