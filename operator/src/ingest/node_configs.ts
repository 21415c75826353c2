// Each node's traces, from the IrqTraces and the Node's labels as the API
// server has them (informers), for the ingest to push to agents. Any change
// to either, and a trace reaching the end of its duration, is announced.
import * as k8s from '@kubernetes/client-node';
import type { irqtrace } from '@irqtrace/proto';
import type { Logger } from 'pino';
import { nodeInformer, restartOnError, traceInformer } from '../kube.js';
import type { CachedInformer, TraceObject } from '../kube.js';
import { traceConfig, traceEndUnixNs, tracesForNode } from '../model/node_config.js';
import type { NodeConfigSource } from './server.js';

export class ClusterNodeConfigs implements NodeConfigSource {
  private readonly traces: CachedInformer<TraceObject>;
  private readonly nodes: CachedInformer<k8s.V1Node>;
  private readonly listeners: (() => void)[] = [];
  private expiry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(kubeConfig: k8s.KubeConfig, log: Logger) {
    this.traces = traceInformer(kubeConfig);
    this.nodes = nodeInformer(kubeConfig);
    for (const informer of [this.traces, this.nodes] as k8s.Informer<k8s.KubernetesObject>[]) {
      informer.on('change', () => { this.changed(); });
      restartOnError(informer, log, () => this.stopped);
    }
  }

  async start(): Promise<void> {
    await Promise.all([this.traces.start(), this.nodes.start()]);
    this.changed();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.expiry);
    await Promise.all([this.traces.stop(), this.nodes.stop()]);
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  tracesFor(node: string): irqtrace.v1.ITraceConfig[] {
    // A node the API server does not know (yet) has no labels: only traces for every node apply.
    const labels = this.nodes.get(node)?.metadata?.labels ?? {};
    return tracesForNode(this.traces.list(), labels).map(traceConfig);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
    // Wake up when the next trace ends: its nodes' configs change then.
    clearTimeout(this.expiry);
    const now = Date.now();
    const next = Math.min(...this.traces.list().map((t) => Number(traceEndUnixNs(t) / 1_000_000n)).filter((end) => end > now));
    if (Number.isFinite(next) && !this.stopped) this.expiry = setTimeout(() => { this.changed(); }, next - now + 50);
  }
}
