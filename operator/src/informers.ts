// The IrqTrace and Node informers, one set per process: the controller, the
// status aggregator and the ingest's node configs of an all-roles operator
// share them (one list and one watch of each against the API server; Nodes
// metadata-only). A role given no set makes its own and owns it.
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { nodeInformer, restartOnError, traceInformer } from './kube.js';
import type { CachedInformer, ObjectMetadata, TraceObject } from './kube.js';

type Verb = 'add' | 'update' | 'delete' | 'change';

export interface InformerHandlers {
  traces?: Partial<Record<Verb, (t: TraceObject) => void>>;
  nodes?: Partial<Record<Verb, (n: ObjectMetadata) => void>>;
}

export class SharedInformers {
  readonly traces: CachedInformer<TraceObject>;
  readonly nodes: CachedInformer<ObjectMetadata>;
  private started: Promise<void> | undefined;
  private stopped = false;

  constructor(kubeConfig: k8s.KubeConfig, log: Logger) {
    this.traces = traceInformer(kubeConfig);
    this.nodes = nodeInformer(kubeConfig);
    for (const informer of [this.traces, this.nodes] as k8s.Informer<k8s.KubernetesObject>[]) restartOnError(informer, log, () => this.stopped);
  }

  /** Lists and watches both; resolves once both caches are filled. Called again, it is the same start. */
  start(): Promise<void> {
    this.started ??= Promise.all([this.traces.start(), this.nodes.start()]).then(() => undefined);
    return this.started;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([this.traces.stop(), this.nodes.stop()]);
  }

  /** One role's handlers; the function returned takes them off again. */
  subscribe(handlers: InformerHandlers): () => void {
    const offs: (() => void)[] = [];
    for (const [verb, fn] of Object.entries(handlers.traces ?? {}) as [Verb, (t: TraceObject) => void][]) {
      this.traces.on(verb, fn);
      offs.push(() => { this.traces.off(verb, fn); });
    }
    for (const [verb, fn] of Object.entries(handlers.nodes ?? {}) as [Verb, (n: ObjectMetadata) => void][]) {
      this.nodes.on(verb, fn);
      offs.push(() => { this.nodes.off(verb, fn); });
    }
    return () => { for (const off of offs) off(); };
  }
}

/** A role's view of the informers: the process's shared set, or one of its own that it starts and stops. */
export class RoleInformers {
  readonly set: SharedInformers;
  private readonly owned: boolean;
  private unsubscribe: (() => void) | undefined;

  constructor(shared: SharedInformers | undefined, kubeConfig: k8s.KubeConfig, log: Logger, private readonly handlers: InformerHandlers) {
    this.owned = !shared;
    this.set = shared ?? new SharedInformers(kubeConfig, log);
  }

  get traces(): CachedInformer<TraceObject> {
    return this.set.traces;
  }

  get nodes(): CachedInformer<ObjectMetadata> {
    return this.set.nodes;
  }

  async start(): Promise<void> {
    this.unsubscribe ??= this.set.subscribe(this.handlers);
    await this.set.start();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.owned) await this.set.stop();
  }
}
