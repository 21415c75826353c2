// Each node's traces, from the IrqTraces and the Node's labels as the API
// server has them (informers), for the ingest to push to agents. Any change
// to either, and a trace reaching the end of its duration, is announced.
import * as k8s from '@kubernetes/client-node';
import type { irqtrace } from '@irqtrace/proto';
import type { Logger } from 'pino';
import { API_GROUP, API_VERSION, PLURAL } from '../api/crd.js';
import type { IrqTrace } from '../api/schema.js';
import { traceConfig, traceEndUnixNs, tracesForNode } from '../model/node_config.js';
import type { NodeConfigSource } from './server.js';

type TraceObject = IrqTrace & k8s.KubernetesObject;

export class ClusterNodeConfigs implements NodeConfigSource {
  private readonly traces: k8s.Informer<TraceObject> & k8s.ObjectCache<TraceObject>;
  private readonly nodes: k8s.Informer<k8s.V1Node> & k8s.ObjectCache<k8s.V1Node>;
  private readonly listeners: (() => void)[] = [];
  private expiry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(kubeConfig: k8s.KubeConfig, private readonly log: Logger) {
    const custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.traces = k8s.makeInformer(kubeConfig, `/apis/${API_GROUP}/${API_VERSION}/${PLURAL}`, async () =>
      (await custom.listClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: PLURAL })) as k8s.KubernetesListObject<TraceObject>,
    );
    this.nodes = k8s.makeInformer(kubeConfig, '/api/v1/nodes', () => core.listNode());
    for (const informer of [this.traces, this.nodes] as k8s.Informer<k8s.KubernetesObject>[]) {
      informer.on('change', () => { this.changed(); });
      informer.on('error', (err: unknown) => {
        if (this.stopped) return;
        this.log.warn({ err: String(err) }, 'watch broken; restarting it');
        setTimeout(() => { if (!this.stopped) void informer.start(); }, 2000);
      });
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
