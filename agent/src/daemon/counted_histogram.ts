// A Prometheus histogram with one label, counted in plain arrays: observe()
// is a bucket search and two additions. prom-client's own Histogram hashes
// the labels on every observe, which at a storm's rate of events costs more
// than the rest of their accounting. Its Registry formats this one as its own:
// it asks a metric only for name, help, type, get() and reset().
import type { Histogram, Registry } from 'prom-client';

type Values = Awaited<ReturnType<Histogram['get']>>['values'];

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
    const values: Values = [];
    for (const [labelValue, s] of this.series) {
      let cumulative = 0;
      for (let i = 0; i <= this.upperBounds.length; i++) {
        cumulative += s.counts[i] ?? 0;
        const le = i < this.upperBounds.length ? (this.upperBounds[i] ?? 0) : '+Inf';
        values.push({ metricName: `${this.name}_bucket`, labels: { le, [this.labelName]: labelValue }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels: { [this.labelName]: labelValue }, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: { [this.labelName]: labelValue }, value: s.count });
    }
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
