// Prometheus metrics of the node agent, and its /metrics, /healthz and
// /readyz endpoints.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class AgentMetrics {
  readonly registry = new Registry();
  readonly sections = new Counter({ name: 'irqtrace_sections_total', help: 'Sections over the threshold, by kind and stage reached (received, filtered, batched)', labelNames: ['kind', 'stage'], registers: [this.registry] });
  readonly kernelSeen = new Gauge({ name: 'irqtrace_kernel_sections_seen', help: 'Sections the kernel side measured (all, under the threshold too), by CPU', labelNames: ['cpu'], registers: [this.registry] });
  readonly dropped = new Counter({ name: 'irqtrace_dropped_total', help: 'Sections or events lost, by stage', labelNames: ['stage'], registers: [this.registry] });
  readonly duration = new Histogram({
    name: 'irqtrace_section_duration_seconds',
    help: 'Durations of the sections over the threshold, by kind',
    labelNames: ['kind'],
    buckets: [1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1, 1],
    registers: [this.registry],
  });
  readonly backend = new Gauge({ name: 'irqtrace_backend_info', help: '1 for the backend, method and phase in effect', labelNames: ['backend', 'method', 'phase'], registers: [this.registry] });
  readonly unacked = new Gauge({ name: 'irqtrace_unacked_batches', help: 'Batches not yet acknowledged by the ingest', registers: [this.registry] });
  readonly connected = new Gauge({ name: 'irqtrace_ingest_connected', help: '1 while the ingest stream is up', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'irqtrace_agent_' });
  }

  setBackend(backend: string, method: string, phase: string): void {
    this.backend.reset();
    this.backend.set({ backend, method, phase }, 1);
  }
}

/** /metrics always; /healthz while the process runs; /readyz when ready() says so. */
export async function serveMetrics(metrics: AgentMetrics, port: number, ready: () => { ok: boolean; why: string }, host = '127.0.0.1'): Promise<Server> {
  const server = createServer((req, res) => {
    void (async () => {
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(await metrics.registry.metrics());
      } else if (req.url === '/healthz') {
        res.writeHead(200).end('ok\n');
      } else if (req.url === '/readyz') {
        const r = ready();
        res.writeHead(r.ok ? 200 : 503).end(`${r.ok ? 'ready' : r.why}\n`);
      } else {
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return server;
}
