// What each node's agent is told (DESIGN.md §3): of all IrqTraces, those
// whose nodeSelector matches the node's labels, as TraceConfigs. Traces being
// deleted or past their duration are left out, so agents drop them and unload
// the kernel side when nothing else needs it.
import { LIMITS, irqtrace, toLong } from '@irqtrace/proto';
import type { IrqTrace, IrqTraceSpec } from '../api/schema.js';
import { durationNs } from './duration.js';
import { selects } from './selector.js';

const pb = irqtrace.v1;

// Every value the API's schema allows (api/schema.ts), by type: a value added there fails to compile here until mapped.
const METHODS: Record<NonNullable<IrqTraceSpec['method']>, irqtrace.v1.MethodChoice> = {
  auto: pb.MethodChoice.METHOD_CHOICE_AUTO,
  exact: pb.MethodChoice.METHOD_CHOICE_EXACT,
  hybrid: pb.MethodChoice.METHOD_CHOICE_HYBRID,
  sampled: pb.MethodChoice.METHOD_CHOICE_SAMPLED,
};
const BACKENDS: Record<NonNullable<IrqTraceSpec['backend']>, irqtrace.v1.BackendChoice> = {
  auto: pb.BackendChoice.BACKEND_CHOICE_AUTO,
  kmod: pb.BackendChoice.BACKEND_CHOICE_KMOD,
  ebpf: pb.BackendChoice.BACKEND_CHOICE_EBPF,
};

/** When the trace stops, in Unix ns (0: runs until deleted). */
export function traceEndUnixNs(t: IrqTrace): bigint {
  if (!t.spec.duration || !t.metadata.creationTimestamp) return 0n;
  return BigInt(Date.parse(t.metadata.creationTimestamp)) * 1_000_000n + durationNs(t.spec.duration);
}

/** True while the trace asks for tracing: not being deleted, not past its duration. */
export function isLive(t: IrqTrace, nowUnixNs = BigInt(Date.now()) * 1_000_000n): boolean {
  if (t.metadata.deletionTimestamp) return false;
  const end = traceEndUnixNs(t);
  return end === 0n || end > nowUnixNs;
}

export function traceConfig(t: IrqTrace): irqtrace.v1.ITraceConfig {
  const s = t.spec;
  return {
    name: t.metadata.name,
    generation: toLong(BigInt(t.metadata.generation ?? 0)),
    target: { all: s.target.all ?? false, irqs: [...(s.target.irqs ?? [])], irqNames: [...(s.target.irqNames ?? [])] },
    thresholdNs: toLong(s.threshold ? durationNs(s.threshold) : LIMITS.thresholdNs.default),
    method: METHODS[s.method ?? 'auto'],
    backend: BACKENDS[s.backend ?? 'auto'],
    samplePeriodNs: toLong(s.samplePeriod ? durationNs(s.samplePeriod) : LIMITS.periodNs.default),
    softirqs: s.softirqs ?? false,
    stacks: s.stacks ?? true,
    endUnixNs: toLong(traceEndUnixNs(t)),
  };
}

/** The traces that apply to a node with these labels, by name (stable order, so configs compare). */
export function tracesForNode(traces: readonly IrqTrace[], labels: Readonly<Record<string, string>>, nowUnixNs?: bigint): IrqTrace[] {
  return traces.filter((t) => isLive(t, nowUnixNs) && selects(t.spec.nodeSelector, labels)).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

/** The node's config; its version says which change it is (the caller counts). */
export function nodeConfig(traces: readonly IrqTrace[], labels: Readonly<Record<string, string>>, version: bigint, nowUnixNs?: bigint): irqtrace.v1.INodeConfig {
  return { version: toLong(version), traces: tracesForNode(traces, labels, nowUnixNs).map(traceConfig) };
}
