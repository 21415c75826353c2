// Per trace, per node summaries of the event stream, and the status they
// make (DESIGN.md §4). Pure: the aggregator feeds it stream messages and
// checkpoints its node records. Each record knows the last stream message
// applied to it and, per boot of the node, the last agent batch counted, so
// a message replayed after a restart, or a batch re-sent after JetStream's
// duplicate window, is not counted twice.
import { endsText, irqtrace, toBigInt } from '@irqtrace/proto';
import { MAX_STATUS_NODES, MAX_WORST } from '../api/schema.js';
import type { NodeStatus, Violation } from '../api/schema.js';
import { formatNs } from '../model/duration.js';

const pb = irqtrace.v1;

/** A node is reporting while it has been heard from within this long (heartbeats come every 10 s). */
export const REPORTING_WINDOW_MS = 60_000;
/** Boots of a node remembered for deduplication. */
const MAX_BOOTS = 4;

export interface NodeRecord {
  /** Stream sequence of the last message applied. */
  appliedThrough: number;
  /** [bootId, the highest agent batch seq counted (decimal: a uint64)], the latest boot last. */
  boots: [string, string][];
  violations: number;
  maxDurationNs: number;
  lost: number;
  /** Sections the host took (the steal clock says): not violations. Absent in records stored before it. */
  hypervisor?: number;
  /** Unix ms of the last message from the node. */
  lastSeen?: number;
  connection?: 'connected' | 'disconnected';
  /** method: the irqs-off method; irqLines: whether IRQ lines are hooked (always exactly). */
  backend?: { phase: string; backend: string; method: string; irqLines?: boolean; reason: string };
  last?: Violation;
  /** The node's longest sections, longest first, at most MAX_WORST: the trace's worst offenders are the longest of these. */
  worst?: Violation[];
}

const KINDS: Record<number, string> = {
  [pb.SectionKind.SECTION_KIND_IRQS_OFF]: 'irqs_off',
  [pb.SectionKind.SECTION_KIND_SOFTIRQS_OFF]: 'softirqs_off',
  [pb.SectionKind.SECTION_KIND_IRQ_LINE]: 'irq_line',
};

/** The interrupt code a section belongs to, in words; undefined for a task's. */
function contextOf(e: irqtrace.v1.IEvent): string | undefined {
  const c = e.context;
  if (!c || c.kind === pb.ContextKind.CONTEXT_KIND_UNSPECIFIED || c.kind === pb.ContextKind.CONTEXT_KIND_TASK) return undefined;
  return c.summary || 'interrupt';
}

function violationOf(node: string, e: irqtrace.v1.IEvent, receivedUnixNs: bigint): Violation {
  const t = e.task;
  const context = contextOf(e);
  const frames = (e.stack ?? []).slice(0, 4).map((f) => (f.symbol ? `${f.symbol}+0x${toBigInt(f.offset).toString(16)}${f.module ? ` [${f.module}]` : ''}` : `0x${toBigInt(f.address).toString(16)}`));
  const method = pb.Method[e.method ?? 0] ?? '';
  return {
    time: new Date(Number(receivedUnixNs / 1_000_000n)).toISOString(),
    kind: KINDS[e.kind ?? 0] ?? 'unknown',
    durationNs: Number(toBigInt(e.durationNs)),
    ...(e.method ? { method: method.replace('METHOD_', '').toLowerCase(), ends: endsText({ method, start: e.start, end: e.end, errorNs: toBigInt(e.errorBoundNs) }, formatNs) } : {}),
    cpu: e.cpu ?? 0,
    ...(e.kind === pb.SectionKind.SECTION_KIND_IRQ_LINE ? { irq: e.irq ?? 0 } : {}),
    ...(context ? { context } : {}),
    ...(t?.comm ? { comm: t.comm } : {}),
    ...(t?.pid ? { pid: t.pid } : {}),
    // An interrupt's section is not the interrupted task's pod's.
    ...(context ? {} : t?.podName ? { pod: `${t.podNamespace ?? ''}/${t.podName}` } : t?.podUid ? { pod: `uid:${t.podUid}` } : {}),
    node,
    ...(frames.length ? { topFrames: frames } : {}),
  };
}

/** Who held interrupts off, for the WORST column: the interrupt code, else the pod and its task, else the task. */
function whoHeld(v: Violation): string {
  const task = `${v.comm ?? '?'}/${v.pid ?? 0}`;
  return v.context ?? (v.pod ? `${v.pod} (${task})` : task);
}

/** Whether a section this long is among the MAX_WORST longest with worst. */
function entersWorst(worst: Violation[], durationNs: number): boolean {
  return worst.length < MAX_WORST || durationNs > (worst.at(-1)?.durationNs ?? 0);
}

/** worst with v among it, if it is among the MAX_WORST longest; a new array only when it changes. */
function keepLongest(worst: Violation[], v: Violation): Violation[] {
  if (!entersWorst(worst, v.durationNs)) return worst;
  const at = worst.findIndex((w) => v.durationNs > w.durationNs);
  const next = at < 0 ? [...worst, v] : [...worst.slice(0, at), v, ...worst.slice(at)];
  return next.slice(0, MAX_WORST);
}

const newRecord = (): NodeRecord => ({ appliedThrough: 0, boots: [], violations: 0, maxDurationNs: 0, lost: 0 });

/** What a trace watches: interrupts off on every CPU (and every line), or chosen IRQ lines. */
export type TraceWatches = 'all' | 'irq_lines';

/**
 * The method a trace's sections are measured with on a node. A record restored from a checkpoint
 * written before irqLines was kept does not know about IRQ lines: no method until the node's next
 * heartbeat says.
 */
function methodFor(b: NonNullable<NodeRecord['backend']>, watches: TraceWatches): { method?: string } {
  if (watches === 'all') return { method: b.method };
  if (b.irqLines === undefined) return {};
  return { method: b.irqLines ? 'exact' : 'unspecified' };
}

export class TraceAggregate {
  readonly nodes = new Map<string, NodeRecord>();
  /** Nodes changed since their record was last stored, with a count of changes to tell a write's snapshot from a later change. */
  readonly dirty = new Map<string, number>();
  private changes = 0;

  constructor(readonly trace: string) {}

  private changed(node: string): void {
    this.dirty.set(node, ++this.changes);
  }

  /** The node's record as of change `change` is stored: clean, unless it changed since. */
  written(node: string, change: number): void {
    if (this.dirty.get(node) === change) this.dirty.delete(node);
  }

  private record(node: string): NodeRecord {
    let r = this.nodes.get(node);
    if (!r) this.nodes.set(node, (r = newRecord()));
    return r;
  }

  /** An events message (NodeBatch) at this stream sequence; false when it was counted before. */
  applyBatch(streamSeq: number, b: irqtrace.v1.INodeBatch): boolean {
    const node = b.node ?? '';
    const r = this.record(node);
    if (streamSeq <= r.appliedThrough) return false;
    r.appliedThrough = streamSeq;
    this.changed(node);
    const boot = b.bootId ?? '';
    const seq = toBigInt(b.seq);
    const counted = r.boots.find(([id]) => id === boot)?.[1];
    const received = toBigInt(b.receivedUnixNs);
    r.lastSeen = Math.max(r.lastSeen ?? 0, Number(received / 1_000_000n));
    if (counted !== undefined && seq <= BigInt(counted)) return false;
    r.boots = [...r.boots.filter(([id]) => id !== boot), [boot, seq.toString()] as [string, string]].slice(-MAX_BOOTS);
    // A violation's words are made only for the events the status shows (among the longest, or
    // the last): the aggregator reads every event of the cluster, and catches up after a fault.
    const events = b.events ?? [];
    let last: irqtrace.v1.IEvent | undefined;
    for (const e of events) {
      if (e.hypervisor) {
        r.hypervisor = (r.hypervisor ?? 0) + 1;
        continue;
      }
      last = e;
      const durationNs = Number(toBigInt(e.durationNs));
      r.violations++;
      if (durationNs > r.maxDurationNs) r.maxDurationNs = durationNs;
      if (entersWorst(r.worst ?? [], durationNs)) r.worst = keepLongest(r.worst ?? [], violationOf(node, e, received));
    }
    if (last) r.last = violationOf(node, last, received);
    for (const l of b.losses ?? []) r.lost += Number(toBigInt(l.count));
    return true;
  }

  /** A state message (NodeState) at this stream sequence. */
  applyState(streamSeq: number, s: irqtrace.v1.INodeState): void {
    const node = s.node ?? '';
    const r = this.record(node);
    if (streamSeq <= r.appliedThrough) return;
    r.appliedThrough = streamSeq;
    this.changed(node);
    r.lastSeen = Math.max(r.lastSeen ?? 0, Number(toBigInt(s.unixNs) / 1_000_000n));
    r.connection = s.connection === pb.NodeState.Connection.CONNECTION_DISCONNECTED ? 'disconnected' : 'connected';
    if (s.backend) {
      const b = s.backend;
      r.backend = {
        phase: (pb.BackendState.Phase[b.phase ?? 0] ?? 'PHASE_UNSPECIFIED').replace('PHASE_', '').toLowerCase(),
        backend: (pb.Backend[b.backend ?? 0] ?? '').replace('BACKEND_', '').toLowerCase(),
        method: (pb.Method[b.irqsOffMethod ?? 0] ?? '').replace('METHOD_', '').toLowerCase(),
        irqLines: b.irqLines ?? false,
        reason: b.reason ?? '',
      };
    }
  }

  /**
   * The aggregator's part of the status, at `now`; `targeted` is the controller's count. A node's
   * method is the one this trace's sections are measured with: the irqs-off method for a trace of
   * all interrupts, exact for one of IRQ lines (hooks on disable_irq/enable_irq).
   */
  status(now: number, targeted: number, watches: TraceWatches = 'all'): AggregateStatus {
    const all = [...this.nodes.entries()];
    // Sets, not lookups in arrays: thousands of nodes are looked up in each.
    const reporting = new Set(all.filter(([, r]) => r.connection !== 'disconnected' && (r.lastSeen ?? 0) > now - REPORTING_WINDOW_MS).map(([name]) => name));
    const failed = all.filter(([, r]) => r.backend?.phase === 'failed');
    const silent = all.filter(([name, r]) => (r.violations > 0 || r.backend) && !reporting.has(name));
    const silentNames = new Set(silent.map(([name]) => name));
    const violations = all.reduce((n, [, r]) => n + r.violations, 0);
    const maxDurationNs = all.reduce((m, [, r]) => Math.max(m, r.maxDurationNs), 0);
    // The longest sections anywhere: each node keeps its longest few, so these are exact.
    const worstOffenders = all
      .flatMap(([, r]) => r.worst ?? [])
      .sort((a, b) => b.durationNs - a.durationNs)
      .slice(0, MAX_WORST);
    // Nodes worth a line: with violations, losses or problems (a backend that fell back says why); the worst first, capped.
    const notable = all.filter(([name, r]) => r.violations > 0 || r.lost > 0 || (r.hypervisor ?? 0) > 0 || r.backend?.phase === 'failed' || !!r.backend?.reason || silentNames.has(name));
    notable.sort(([, a], [, b]) => b.maxDurationNs - a.maxDurationNs || b.violations - a.violations);
    const nodes: NodeStatus[] = notable.slice(0, MAX_STATUS_NODES).map(([name, r]) => ({
      name,
      ...(r.backend ? { backend: r.backend.backend, ...methodFor(r.backend, watches) } : {}),
      phase: r.backend?.phase === 'failed' ? 'Failed' : reporting.has(name) ? 'Running' : 'NotReporting',
      ...(r.backend?.reason ? { message: r.backend.reason.slice(0, 512) } : {}),
      violations: r.violations,
      maxDurationNs: r.maxDurationNs,
      ...(r.lost ? { lost: r.lost } : {}),
      ...(r.hypervisor ? { hypervisorStalls: r.hypervisor } : {}),
      ...(r.lastSeen ? { lastSeen: new Date(r.lastSeen).toISOString() } : {}),
      ...(r.last ? { lastViolation: r.last } : {}),
    }));
    const worst = worstOffenders[0];
    const conditions: AggregateCondition[] = [
      violations
        ? { type: 'Violating', status: 'True', reason: 'ThresholdExceeded', message: `${violations} section${violations === 1 ? '' : 's'} over the threshold; the longest ${formatNs(maxDurationNs)}` }
        : { type: 'Violating', status: 'False', reason: 'NoViolations', message: 'no section over the threshold so far' },
      failed.length
        ? { type: 'Degraded', status: 'True', reason: 'BackendUnsupported', message: `${failed.length} node${failed.length === 1 ? '' : 's'} cannot trace: ${failed.slice(0, 3).map(([n, r]) => `${n}: ${r.backend?.reason ?? ''}`).join('; ')}` }
        : silent.length
          ? { type: 'Degraded', status: 'True', reason: 'NodesNotReporting', message: `${silent.length} node${silent.length === 1 ? '' : 's'} not heard from in ${REPORTING_WINDOW_MS / 1000}s: ${silent.slice(0, 5).map(([n]) => n).join(', ')}` }
          : { type: 'Degraded', status: 'False', reason: 'AllNodesReporting', message: 'every node that reported is reporting' },
    ];
    return {
      nodesReporting: reporting.size,
      nodesSummary: `${reporting.size}/${targeted}`,
      violations,
      maxDurationNs,
      lost: all.reduce((n, [, r]) => n + r.lost, 0),
      hypervisorStalls: all.reduce((n, [, r]) => n + (r.hypervisor ?? 0), 0),
      worst: worst ? `${formatNs(worst.durationNs)} ${whoHeld(worst)} on ${worst.node ?? '?'}` : '',
      worstOffenders,
      nodes,
      nodesOmitted: Math.max(0, notable.length - MAX_STATUS_NODES),
      conditions,
    };
  }
}

export interface AggregateCondition {
  type: 'Violating' | 'Degraded';
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export interface AggregateStatus {
  nodesReporting: number;
  nodesSummary: string;
  violations: number;
  maxDurationNs: number;
  lost: number;
  hypervisorStalls: number;
  worst: string;
  worstOffenders: Violation[];
  nodes: NodeStatus[];
  nodesOmitted: number;
  conditions: AggregateCondition[];
}
