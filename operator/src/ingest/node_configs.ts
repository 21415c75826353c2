// Each node's traces, from the IrqTraces and the Node's labels as the API
// server has them (informers), for the ingest to push to agents. Any change
// to either, and a trace reaching the end of its duration, is announced.
import type * as k8s from '@kubernetes/client-node';
import type { irqtrace } from '@irqtrace/proto';
import type { Logger } from 'pino';
import { RoleInformers } from '../informers.js';
import type { SharedInformers } from '../informers.js';
import { traceConfig, traceEndUnixNs, tracesForNode } from '../model/node_config.js';
import type { NodeConfigSource } from './server.js';

export class ClusterNodeConfigs implements NodeConfigSource {
  private readonly informers: RoleInformers;
  private readonly listeners: (() => void)[] = [];
  private expiry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(kubeConfig: k8s.KubeConfig, log: Logger, informers?: SharedInformers) {
    const changed = (): void => { this.changed(); };
    this.informers = new RoleInformers(informers, kubeConfig, log, { traces: { change: changed }, nodes: { change: changed } });
  }

  async start(): Promise<void> {
    await this.informers.start();
    this.changed();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.expiry);
    await this.informers.stop();
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  tracesFor(node: string): irqtrace.v1.ITraceConfig[] {
    // A node the API server does not know (yet) has no labels: only traces for every node apply.
    const labels = this.informers.nodes.get(node)?.metadata?.labels ?? {};
    return tracesForNode(this.informers.traces.list(), labels).map(traceConfig);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
    // Wake up when the next trace ends: its nodes' configs change then.
    clearTimeout(this.expiry);
    const now = Date.now();
    const next = Math.min(...this.informers.traces.list().map((t) => Number(traceEndUnixNs(t) / 1_000_000n)).filter((end) => end > now));
    if (Number.isFinite(next) && !this.stopped) this.expiry = setTimeout(() => { this.changed(); }, next - now + 50);
  }
}
