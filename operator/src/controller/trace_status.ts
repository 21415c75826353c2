// The part of an IrqTrace's status the controller owns: what is targeted and
// whether agents are asked to run. Every status field has one owner: counts,
// nodesReporting and nodesSummary (reporting/targeted, from the controller's
// nodesTargeted), worst offenders and the Violating and Degraded conditions are
// the status aggregator's (a different field manager; conditions are a
// list-map keyed by type, so server-side apply merges the two).
import type { IrqTrace } from '../api/schema.js';
import { isLive, traceEndUnixNs } from '../model/node_config.js';
import { selects } from '../model/selector.js';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface ControllerStatus {
  observedGeneration: number;
  targetSummary: string;
  nodesTargeted: number;
  conditions: Condition[];
}

/** The target in words for `kubectl get`: all, irq 24,25, irq nvme0q*. */
export function targetSummary(t: IrqTrace): string {
  const s = t.spec.target;
  if (s.all) return t.spec.softirqs ? 'all+softirqs' : 'all';
  const lines = [...(s.irqs ?? []).map(String), ...(s.irqNames ?? [])];
  return `irq ${lines.join(',')}`;
}

/** The names of the nodes the trace selects. */
export function targetedNodes(t: IrqTrace, nodes: readonly { name: string; labels: Record<string, string> }[]): string[] {
  return nodes.filter((n) => selects(t.spec.nodeSelector, n.labels)).map((n) => n.name);
}

/** What else the Ready condition must say. */
export interface ReadyCause {
  /** Why Pod Security refuses the agents' pods, and what to label. */
  agentsRefused?: string;
  /** A deleted trace waiting for its nodes to unload it (Unloading, UnloadNotConfirmed). */
  unloading?: { reason: string; message: string };
}

/**
 * The controller's status of a trace, every field it owns in each write (server-side apply drops
 * an owned field a write leaves out). The Ready condition keeps its lastTransitionTime while its
 * status stays the same.
 */
export function controllerStatus(
  t: IrqTrace,
  nodes: readonly { name: string; labels: Record<string, string> }[],
  now = new Date(),
  cause: ReadyCause = {},
): ControllerStatus {
  const generation = t.metadata.generation ?? 0;
  const targeted = targetedNodes(t, nodes).length;
  const expired = !t.metadata.deletionTimestamp && !isLive(t, BigInt(now.getTime()) * 1_000_000n);
  const { agentsRefused, unloading } = cause;
  let ready: Pick<Condition, 'status' | 'reason' | 'message'>;
  if (unloading) {
    ready = { status: 'False', ...unloading };
  } else if (expired) {
    ready = { status: 'False', reason: 'Expired', message: `the trace ended at ${new Date(Number(traceEndUnixNs(t) / 1_000_000n)).toISOString()} (spec.duration ${t.spec.duration ?? ''}); agents unloaded it` };
  } else if (!targeted) {
    ready = { status: 'False', reason: 'NoNodesMatch', message: 'no node has the labels spec.nodeSelector asks for' };
  } else if (agentsRefused) {
    ready = { status: 'False', reason: 'AgentsRefused', message: agentsRefused };
  } else {
    ready = { status: 'True', reason: 'AgentsScheduled', message: `agents are scheduled on ${targeted} node${targeted === 1 ? '' : 's'}` };
  }
  const previous = t.status?.conditions?.find((c) => c.type === 'Ready');
  const lastTransitionTime = previous && previous.status === ready.status ? previous.lastTransitionTime : now.toISOString();
  return {
    observedGeneration: generation,
    targetSummary: targetSummary(t),
    nodesTargeted: targeted,
    conditions: [{ type: 'Ready', ...ready, lastTransitionTime, observedGeneration: generation }],
  };
}
