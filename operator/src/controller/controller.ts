// The IrqTrace controller (runs on the leader): watches IrqTraces and Nodes,
// keeps the one agent DaemonSet as the live traces want it (server-side
// apply; deleted with the last trace), holds a finalizer on each trace until
// every node that ran it has applied a config without it (an agent that is
// gone did not unload, nor did one that says its unload failed; at most
// unloadTimeoutMs, then a Warning names the nodes that did not confirm, and
// why), and writes its part of the status.
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
import { AGENT_NAME, AGENT_POD_SECURITY, agentDaemonSet } from './daemonset.js';
import type { AgentDeployment } from './daemonset.js';
import { EventRecorder } from './events.js';
import { controllerStatus, targetedNodes } from './trace_status.js';
import type { PendingNode } from '../ingest/applied.js';

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
  /** What each node's agent has applied (the ingest records it): a deleted trace is released when none still runs it. */
  applied: AppliedConfigs;
  /** How long a deleted trace waits for its nodes to confirm (default 2 min). */
  unloadTimeoutMs?: number;
}

/** The part of AppliedConfigReader the controller reads. */
export interface AppliedConfigs {
  stillRunning(trace: string, candidates: Iterable<string>, inCluster: (node: string) => boolean): PendingNode[];
  onChange(listener: () => void): void;
}

/** Nodes named in a condition or Event, at most. */
const NAMED_NODES = 10;

/** A node a deleted trace waits for, and why when it is not simply the agent's answer. */
function describePending(p: PendingNode): string {
  if (p.state === 'failed') return `${p.node} (${p.failure ?? 'failed'})`;
  if (p.state === 'gone') return `${p.node} (agent gone: its kernel side may still run it${p.failure ? `; it said: ${p.failure}` : ''})`;
  return p.node;
}


/** A write made from a cached object that has changed or gone since: the watch will bring the news. */
class StaleCache extends Error {}

export class TraceController {
  private readonly objects: k8s.KubernetesObjectApi;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly apps: k8s.AppsV1Api;
  private readonly core: k8s.CoreV1Api;
  /** The namespace carries AGENT_POD_SECURITY (checked once per term, before the first DaemonSet). */
  private namespaceAdmitsAgents = false;
  /** Why Pod Security refuses the agents and what to label, while it does (checked at every reconcile). */
  private podSecurityRefusal: string | undefined;
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
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.events = new EventRecorder(kc, 'irqtrace-controller', o.log);
    const trigger = (): void => { this.trigger(); };
    this.informers = new RoleInformers(o.informers, kc, o.log, { traces: { change: trigger }, nodes: { change: trigger } });
    // Agents' reports matter only while a trace waits for them.
    o.applied.onChange(() => { if (this.informers.traces.list().some((t) => t.metadata.deletionTimestamp)) this.trigger(); });
  }

  /** Starts watching and reconciling; an aborted signal (leadership lost meanwhile) stops it before the first write. */
  async start(signal?: AbortSignal): Promise<void> {
    this.stopped = false;
    this.namespaceAdmitsAgents = false;
    this.podSecurityRefusal = undefined;
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
    const traces = this.informers.traces.list();
    const ends = [
      ...traces.map((t) => Number(traceEndUnixNs(t) / 1_000_000n)),
      // A deleted trace's wait for its nodes ends.
      ...traces.filter((t) => t.metadata.deletionTimestamp).map((t) => this.unloadDeadline(t)),
    ].filter((end) => end > now);
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
    const nodes = this.informers.nodes.list().map((n) => ({ name: n.metadata?.name ?? '', labels: n.metadata?.labels ?? {} }));
    // A deleted trace is gone from every node's config (the ingest sends them without it): released once they applied it.
    for (const t of all) if (t.metadata.deletionTimestamp && t.metadata.finalizers?.includes(FINALIZER)) await this.releaseWhenUnloaded(t, nodes);
    for (const t of all) if (!t.metadata.deletionTimestamp) await this.writeStatus(t, nodes);
  }

  private async applyDaemonSet(live: IrqTrace[]): Promise<void> {
    const desired = agentDaemonSet(live, this.o.agents);
    const ns = this.o.agents.namespace;
    if (desired) {
      await this.admitAgents(ns);
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

  /**
   * Pod Security's label on the agents' namespace: a cluster default of baseline refuses
   * host PID, hostPath and privileged containers, and the DaemonSet would make no pods. The
   * operator labels it (agents.podSecurityLabel, RBAC on that namespace only); where it may not,
   * or is told not to, every trace's Ready says exactly what to label (with an Event), until it is.
   */
  private async admitAgents(ns: string): Promise<void> {
    if (this.namespaceAdmitsAgents) return;
    let labels: Record<string, string>;
    try {
      labels = (await this.core.readNamespace({ name: ns })).metadata?.labels ?? {};
    } catch (err) {
      if (!isStatus(err, 403)) throw err;
      // Not allowed to look (RBAC without the namespace rule): nothing to say either way.
      this.namespaceAdmitsAgents = true;
      return;
    }
    const missing = Object.entries(AGENT_POD_SECURITY).filter(([k, v]) => labels[k] !== v);
    const was = labels['pod-security.kubernetes.io/enforce'];
    if (missing.length && this.o.agents.podSecurityLabel !== false) {
      try {
        await this.core.patchNamespace(
          { name: ns, body: { metadata: { labels: Object.fromEntries(missing) } } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        );
        this.o.log.info({ namespace: ns, labels: Object.fromEntries(missing), was: was ?? null }, 'namespace labelled so Pod Security admits the privileged agents');
        missing.length = 0;
      } catch (err) {
        if (!isStatus(err, 403)) throw err;
        this.o.log.warn({ namespace: ns, err: String(err) }, 'cannot label the namespace for Pod Security');
      }
    }
    if (missing.length) {
      this.podSecurityRefusal = `namespace ${ns} enforces Pod Security '${was ?? 'the cluster default'}', which refuses the agents (host PID, host paths, privileged): kubectl label namespace ${ns} ${missing.map(([k, v]) => `${k}=${v}`).join(' ')} --overwrite`;
      return;
    }
    this.podSecurityRefusal = undefined;
    this.namespaceAdmitsAgents = true;
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

  private unloadDeadline(t: IrqTrace): number {
    return Date.parse(t.metadata.deletionTimestamp ?? '') + (this.o.unloadTimeoutMs ?? 120_000);
  }

  /**
   * Releases a deleted trace once no node's agent still runs it; until then its Ready condition
   * names the nodes it waits for, and after unloadTimeoutMs it is released anyway, with a Warning
   * naming the nodes that did not confirm.
   */
  private async releaseWhenUnloaded(t: IrqTrace, nodes: readonly { name: string; labels: Record<string, string> }[]): Promise<void> {
    const inCluster = new Set(nodes.map((n) => n.name));
    const pending = this.o.applied.stillRunning(t.metadata.name, targetedNodes(t, nodes), (node) => inCluster.has(node));
    const named = `${pending.slice(0, NAMED_NODES).map(describePending).join(', ')}${pending.length > NAMED_NODES ? `, and ${pending.length - NAMED_NODES} more` : ''}`;
    const count = `${pending.length} node${pending.length === 1 ? '' : 's'}`;
    if (!pending.length) {
      await this.release(t);
      this.events.record(t, 'Normal', 'Unloaded', 'every node that ran the trace applied a config without it; nodes no other trace needs unloaded the kernel side');
      return;
    }
    if (Date.now() < this.unloadDeadline(t)) {
      await this.writeUnloading(t, nodes, 'Unloading', `waiting for ${count} to apply a config without the trace: ${named}`);
      return;
    }
    const timeout = `${Math.round((this.o.unloadTimeoutMs ?? 120_000) / 1000)}s`;
    const message = `${count} did not confirm within ${timeout} that they stopped tracing it: ${named}; released anyway`;
    await this.writeUnloading(t, nodes, 'UnloadNotConfirmed', message);
    this.events.record(t, 'Warning', 'UnloadNotConfirmed', message);
    await this.release(t);
  }

  private async writeUnloading(t: IrqTrace, nodes: readonly { name: string; labels: Record<string, string> }[], reason: string, message: string): Promise<void> {
    const ready = t.status?.conditions?.find((c) => c.type === 'Ready');
    if (ready?.reason === reason && ready.message === message) return;
    await this.applyStatus(t, controllerStatus(t, nodes, new Date(), { unloading: { reason, message } }));
  }

  private async release(t: IrqTrace): Promise<void> {
    const index = t.metadata.finalizers?.indexOf(FINALIZER) ?? -1;
    if (index < 0) return;
    await this.patchMetadata(t, [{ op: 'remove', path: `/metadata/finalizers/${index}` }]);
  }

  private async writeStatus(t: IrqTrace, nodes: { name: string; labels: Record<string, string> }[]): Promise<void> {
    const next = controllerStatus(t, nodes, new Date(), { agentsRefused: this.podSecurityRefusal });
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
