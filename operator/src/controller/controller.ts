// The IrqTrace controller (runs on the leader): watches IrqTraces and Nodes,
// keeps the one agent DaemonSet as the live traces want it (server-side
// apply; deleted with the last trace), holds a finalizer on each trace until
// the DaemonSet no longer carries it, and writes its part of the status.
// Reconciles are coalesced: any number of changes while one runs cause one
// more run, never a pile-up.
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_GROUP, API_VERSION, PLURAL } from '../api/crd.js';
import { applyTraceStatus, isStatus } from '../kube.js';
import { RoleInformers } from '../informers.js';
import type { SharedInformers } from '../informers.js';
import type { IrqTrace } from '../api/schema.js';
import { isLive, traceEndUnixNs } from '../model/node_config.js';
import { AGENT_NAME, agentDaemonSet } from './daemonset.js';
import type { AgentDeployment } from './daemonset.js';
import { EventRecorder } from './events.js';
import { controllerStatus } from './trace_status.js';

export const FINALIZER = 'irqtrace.io/agents';
const FIELD_MANAGER = 'irqtrace-controller';

export interface ControllerOptions {
  kubeConfig: k8s.KubeConfig;
  agents: AgentDeployment;
  log: Logger;
  /** Reconcile at least this often even without changes (default 5 min). */
  resyncMs?: number;
  /** The process's informers (default: its own). */
  informers?: SharedInformers;
}


/** A write made from a cached object that has changed or gone since: the watch will bring the news. */
class StaleCache extends Error {}

export class TraceController {
  private readonly objects: k8s.KubernetesObjectApi;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly apps: k8s.AppsV1Api;
  private readonly informers: RoleInformers;
  private readonly events: EventRecorder;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  /** Reconciles done, and the last error (for /readyz and tests). */
  reconciles = 0;
  lastError: string | undefined;

  constructor(private readonly o: ControllerOptions) {
    const kc = o.kubeConfig;
    this.objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    this.custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
    this.events = new EventRecorder(kc, 'irqtrace-controller', o.log);
    const trigger = (): void => { this.trigger(); };
    this.informers = new RoleInformers(o.informers, kc, o.log, { traces: { change: trigger }, nodes: { change: trigger } });
  }

  /** Starts watching and reconciling; an aborted signal (leadership lost meanwhile) stops it before the first write. */
  async start(signal?: AbortSignal): Promise<void> {
    this.stopped = false;
    await this.informers.start();
    if (signal?.aborted) {
      await this.stop();
      signal.throwIfAborted();
    }
    this.trigger();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.informers.stop();
    await this.running;
  }

  /** Asks for a reconcile; coalesced with one running. */
  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.reconcile()
      .then(() => { this.lastError = undefined; })
      .catch((err: unknown) => {
        this.again = true;
        // The cache was behind the API server (an object changed or went meanwhile): the watch brings the news.
        if (err instanceof StaleCache) {
          this.o.log.debug({ err: String(err) }, 'reconciled from a stale cache; again');
          return;
        }
        this.lastError = String(err);
        this.o.log.error({ err: String(err) }, 'reconcile failed; retrying');
      })
      .finally(() => {
        this.running = undefined;
        this.reconciles++;
        this.schedule();
      });
  }

  /** The next run: at once if asked meanwhile (after a failure, in a second), else at the next expiry or resync. */
  private schedule(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const now = Date.now();
    const ends = this.informers.traces.list().map((t) => Number(traceEndUnixNs(t) / 1_000_000n)).filter((end) => end > now);
    const next = Math.min(now + (this.o.resyncMs ?? 300_000), ...ends.map((end) => end + 100));
    const delay = this.again ? (this.lastError ? 1000 : 0) : next - now;
    this.again = false;
    this.timer = setTimeout(() => { this.trigger(); }, delay);
  }

  private async reconcile(): Promise<void> {
    const all = [...this.informers.traces.list()];
    for (const t of all) if (!t.metadata.deletionTimestamp && !t.metadata.finalizers?.includes(FINALIZER)) await this.addFinalizer(t);
    const live = all.filter((t) => isLive(t));
    await this.applyDaemonSet(live);
    // The DaemonSet no longer carries a deleted trace: agents drop it with their next config.
    for (const t of all) if (t.metadata.deletionTimestamp && t.metadata.finalizers?.includes(FINALIZER)) await this.release(t);
    const nodes = this.informers.nodes.list().map((n) => ({ name: n.metadata?.name ?? '', labels: n.metadata?.labels ?? {} }));
    for (const t of all) if (!t.metadata.deletionTimestamp) await this.writeStatus(t, nodes);
  }

  private async applyDaemonSet(live: IrqTrace[]): Promise<void> {
    const desired = agentDaemonSet(live, this.o.agents);
    const ns = this.o.agents.namespace;
    if (desired) {
      await this.objects.patch(desired, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
      return;
    }
    try {
      await this.apps.deleteNamespacedDaemonSet({ name: AGENT_NAME, namespace: ns, propagationPolicy: 'Background' });
      this.o.log.info({ daemonset: `${ns}/${AGENT_NAME}` }, 'no live trace: agents removed');
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
  }

  /** JSON patches guarded by the resourceVersion read: a concurrent change makes them fail and retry. */
  private async patchMetadata(t: IrqTrace, ops: object[]): Promise<void> {
    try {
      await this.custom.patchClusterCustomObject(
        { group: API_GROUP, version: API_VERSION, plural: PLURAL, name: t.metadata.name, body: [{ op: 'test', path: '/metadata/resourceVersion', value: t.metadata.resourceVersion }, ...ops] },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch),
      );
    } catch (err) {
      // 404: gone; 409/422: changed since (the test op failed).
      if (isStatus(err, 404) || isStatus(err, 409) || isStatus(err, 422)) throw new StaleCache(String(err));
      throw err;
    }
  }

  private async addFinalizer(t: IrqTrace): Promise<void> {
    const op = t.metadata.finalizers ? { op: 'add', path: '/metadata/finalizers/-', value: FINALIZER } : { op: 'add', path: '/metadata/finalizers', value: [FINALIZER] };
    await this.patchMetadata(t, [op]);
  }

  private async release(t: IrqTrace): Promise<void> {
    const index = t.metadata.finalizers?.indexOf(FINALIZER) ?? -1;
    if (index < 0) return;
    await this.patchMetadata(t, [{ op: 'remove', path: `/metadata/finalizers/${index}` }]);
    this.events.record(t, 'Normal', 'AgentsReleased', 'the trace is gone from the agents\' configuration; nodes no other trace needs unload the kernel side');
  }

  private async writeStatus(t: IrqTrace, nodes: { name: string; labels: Record<string, string> }[]): Promise<void> {
    const next = controllerStatus(t, nodes);
    const current = t.status;
    const ready = current?.conditions?.find((c) => c.type === 'Ready');
    const nextReady = next.conditions[0];
    const unchanged =
      current?.observedGeneration === next.observedGeneration &&
      current.targetSummary === next.targetSummary &&
      current.nodesTargeted === next.nodesTargeted &&
      ready?.status === nextReady?.status &&
      ready?.reason === nextReady?.reason &&
      ready?.message === nextReady?.message;
    if (unchanged) return;
    await this.applyStatus(t, next);
    if (nextReady && ready?.reason !== nextReady.reason) {
      this.events.record(t, nextReady.status === 'True' ? 'Normal' : 'Warning', nextReady.reason, nextReady.message);
    }
  }

  private async applyStatus(t: IrqTrace, status: object): Promise<void> {
    try {
      await applyTraceStatus(this.custom, t.metadata.name, FIELD_MANAGER, status);
    } catch (err) {
      if (isStatus(err, 404)) throw new StaleCache(String(err));
      throw err;
    }
  }

}
