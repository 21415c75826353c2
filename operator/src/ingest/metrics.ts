// The ingest's Prometheus metrics.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class IngestMetrics {
  readonly agents: Gauge;
  readonly batches: Counter;
  readonly events: Counter;
  readonly refused: Counter;
  readonly paused: Counter;
  readonly publishFailures: Counter;
  readonly publishSeconds: Histogram;

  constructor(readonly registry = new Registry()) {
    const registers = [registry];
    this.agents = new Gauge({ name: 'irqtrace_ingest_agents_connected', help: 'Agent streams open on this ingest', registers });
    this.batches = new Counter({ name: 'irqtrace_ingest_batches_total', help: 'Agent batches published and acked', registers });
    this.events = new Counter({ name: 'irqtrace_ingest_events_total', help: 'Events published (once per trace they belong to)', registers });
    this.refused = new Counter({ name: 'irqtrace_ingest_refused_total', help: 'Agent streams refused (bad hello)', registers });
    this.paused = new Counter({ name: 'irqtrace_ingest_backpressure_total', help: 'Times a stream was not read because maxPendingPerAgent of its batches waited for JetStream', registers });
    this.publishFailures = new Counter({ name: 'irqtrace_ingest_publish_failures_total', help: 'Publishes to JetStream that failed', registers });
    this.publishSeconds = new Histogram({
      name: 'irqtrace_ingest_publish_seconds',
      help: 'From a batch taken up to all its PubAcks',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }
}
