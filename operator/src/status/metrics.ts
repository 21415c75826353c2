// The status aggregator's metrics, read from its aggregates at scrape time: sections over the
// threshold and the longest one per trace and node, and how far the status lags the stream.
import { Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { TraceAggregate } from './aggregate.js';

const NAMES = ['irqtrace_violations', 'irqtrace_max_duration_seconds', 'irqtrace_status_lag_messages'];

/** lag: messages in the stream not applied yet (0 when it cannot tell). */
export function registerStatusMetrics(registry: Registry, traces: ReadonlyMap<string, TraceAggregate>, lag: () => Promise<number>): void {
  // A replica that leads again makes a new aggregator: its metrics replace the old one's.
  for (const name of NAMES) registry.removeSingleMetric(name);
  new Gauge({
    name: 'irqtrace_violations',
    help: 'Sections over the threshold, by trace and node (from the event stream)',
    labelNames: ['trace', 'node'],
    registers: [registry],
    collect() {
      this.reset();
      for (const a of traces.values()) for (const [node, r] of a.nodes) this.set({ trace: a.trace, node }, r.violations);
    },
  });
  new Gauge({
    name: 'irqtrace_max_duration_seconds',
    help: 'The longest section over the threshold, by trace and node',
    labelNames: ['trace', 'node'],
    registers: [registry],
    collect() {
      this.reset();
      for (const a of traces.values()) for (const [node, r] of a.nodes) this.set({ trace: a.trace, node }, r.maxDurationNs / 1e9);
    },
  });
  new Gauge({
    name: 'irqtrace_status_lag_messages',
    help: 'Messages in the event stream the status aggregator has not applied yet',
    registers: [registry],
    async collect() {
      this.set(await lag().catch(() => 0));
    },
  });
}
