// Several traces on one node: the kernel side runs once with their merged
// configuration (lowest threshold, union of targets), and each event is
// given to the traces it matches (DESIGN.md §3).
import { irqtrace, toBigInt, toLong } from '@irqtrace/proto';
import { Kind } from '../records/layout.js';
import { DEFAULT_KERNEL_CONFIG, validateKernelConfig } from './kernel_config.js';
import { withNamedIrqs } from './irq_names.js';
import type { InterruptLine } from './irq_names.js';
import type { BackendChoice, KernelConfig, MethodChoice } from './kernel_config.js';

const pb = irqtrace.v1;

/** One trace as the agent uses it (from a NodeConfig, or the local config file). */
export interface Trace {
  name: string;
  /** All: irqs-off on every CPU (and softirqs-off if asked) and every IRQ line. Else these IRQ lines only. */
  all: boolean;
  irqs: number[];
  /** IRQ lines by /proc/interrupts action name (a trailing * matches a prefix); resolved on the node into irqs. */
  irqNames?: string[];
  thresholdNs: bigint;
  method: MethodChoice;
  backend: BackendChoice;
  periodNs: bigint;
  softirqs: boolean;
  stacks: boolean;
  /** Unix ns after which the trace no longer applies; 0: no end. */
  endUnixNs: bigint;
}

const BACKENDS: Record<number, BackendChoice> = {
  [pb.BackendChoice.BACKEND_CHOICE_KMOD]: 'kmod',
  [pb.BackendChoice.BACKEND_CHOICE_EBPF]: 'ebpf',
};

// A trace's method is never 'off' (that is the merged kernel config's, for IRQ lines alone): auto stands for it.
const METHOD_CHOICES: Record<MethodChoice, irqtrace.v1.MethodChoice> = {
  auto: pb.MethodChoice.METHOD_CHOICE_AUTO,
  exact: pb.MethodChoice.METHOD_CHOICE_EXACT,
  sampled: pb.MethodChoice.METHOD_CHOICE_SAMPLED,
  hybrid: pb.MethodChoice.METHOD_CHOICE_HYBRID,
  off: pb.MethodChoice.METHOD_CHOICE_AUTO,
};
/** The methods a TraceConfig names (auto and unknown values read as auto). */
const METHODS = new Map<number, MethodChoice>(Object.entries(METHOD_CHOICES).filter(([name]) => name !== 'off' && name !== 'auto').map(([name, value]) => [value, name as MethodChoice]));
const BACKEND_CHOICES: Record<BackendChoice, irqtrace.v1.BackendChoice> = {
  auto: pb.BackendChoice.BACKEND_CHOICE_AUTO,
  kmod: pb.BackendChoice.BACKEND_CHOICE_KMOD,
  ebpf: pb.BackendChoice.BACKEND_CHOICE_EBPF,
};

export function traceFromProto(t: irqtrace.v1.ITraceConfig): Trace {
  return {
    name: t.name ?? '',
    all: t.target?.all ?? false,
    irqs: t.target?.irqs ?? [],
    irqNames: t.target?.irqNames ?? [],
    thresholdNs: toBigInt(t.thresholdNs) || DEFAULT_KERNEL_CONFIG.thresholdNs,
    method: METHODS.get(t.method ?? 0) ?? 'auto',
    backend: BACKENDS[t.backend ?? 0] ?? 'auto',
    periodNs: toBigInt(t.samplePeriodNs) || DEFAULT_KERNEL_CONFIG.periodNs,
    softirqs: t.softirqs ?? false,
    stacks: t.stacks ?? true,
    endUnixNs: toBigInt(t.endUnixNs),
  };
}

/** The trace as the protocol says it (what the agent tells its local readers it runs). */
export function traceToProto(t: Trace): irqtrace.v1.ITraceConfig {
  return {
    name: t.name,
    target: { all: t.all, irqs: t.irqs, irqNames: t.irqNames ?? [] },
    thresholdNs: toLong(t.thresholdNs),
    method: METHOD_CHOICES[t.method],
    backend: BACKEND_CHOICES[t.backend],
    samplePeriodNs: toLong(t.periodNs),
    softirqs: t.softirqs,
    stacks: t.stacks,
    endUnixNs: toLong(t.endUnixNs),
  };
}

/**
 * The traces with their IRQ names resolved against this node's
 * /proc/interrupts (added to irqs), and the names that matched no line.
 */
export function resolveTraceIrqNames(traces: readonly Trace[], lines: readonly InterruptLine[]): { traces: Trace[]; unmatched: string[] } {
  const unmatched = new Set<string>();
  const resolved = traces.map((t) => {
    if (!t.irqNames?.length) return t;
    const r = withNamedIrqs(t.irqs, t.irqNames, lines);
    for (const name of r.unmatched) unmatched.add(name);
    return { ...t, irqs: r.irqs };
  });
  return { traces: resolved, unmatched: [...unmatched] };
}

/**
 * One method for the traces that asked these: the kernel side runs one. In precision
 * exact > hybrid > sampled: exact times both ends of every section; hybrid times the ends it can
 * hook exactly and bounds the others as sampled does; sampled bounds every start. The records of a
 * more precise method serve a trace that asked for less, so one explicit method wins, and of
 * several the most precise; except exact, which needs the preemptirq tracepoints that stock
 * kernels lack: exact with another is left to the node (auto: exact where the kernel can, else
 * hybrid, else sampled) rather than fail every trace on a stock kernel.
 */
function mergeMethods(asked: ReadonlySet<MethodChoice>): MethodChoice {
  const explicit = [...asked].filter((m) => m !== 'auto');
  if (explicit.length === 1) return explicit[0] ?? 'auto';
  if (explicit.includes('exact')) return 'auto';
  // Hybrid and sampled: hybrid samples what sampled does, and its records say which ends are
  // exact (both backends run it; eBPF's times interrupts, not lock or scheduler sections).
  if (explicit.includes('hybrid')) return 'hybrid';
  return 'auto';
}

export interface Merged {
  kernel: KernelConfig;
  backend: BackendChoice;
}

/** The kernel-side configuration that serves every trace; undefined when there is none. */
export function mergeTraces(traces: Trace[], nowUnixNs = BigInt(Date.now()) * 1_000_000n): Merged | undefined {
  const live = traces.filter((t) => t.endUnixNs === 0n || t.endUnixNs > nowUnixNs);
  if (!live.length) return undefined;
  const min = (xs: bigint[]) => xs.reduce((a, b) => (b < a ? b : a));
  const anyAll = live.some((t) => t.all);
  const backends = [...new Set(live.map((t) => t.backend).filter((b) => b !== 'auto'))];
  const backend = backends.length === 1 ? (backends[0] ?? 'auto') : 'auto';
  const method: MethodChoice = anyAll ? mergeMethods(new Set(live.filter((t) => t.all).map((t) => t.method))) : 'off';
  const irqs: KernelConfig['irqs'] = anyAll ? 'all' : [...new Set(live.flatMap((t) => t.irqs))].sort((a, b) => a - b);
  return {
    kernel: validateKernelConfig({
      method,
      thresholdNs: min(live.map((t) => t.thresholdNs)),
      periodNs: min(live.map((t) => t.periodNs)),
      stacks: live.some((t) => t.stacks),
      idle: false,
      softirqs: live.some((t) => t.all && t.softirqs),
      cpus: 'all',
      irqs: Array.isArray(irqs) && irqs.length === 0 ? 'none' : irqs,
    }),
    backend,
  };
}

/**
 * Which traces want an event, for many events: the traces' end times made
 * numbers once, and each distinct answer one shared array, so matching
 * allocates nothing per event.
 */
export class TraceMatcher {
  private readonly endMs: number[];
  private readonly answers = new Map<number, string[]>();

  constructor(readonly traces: readonly Trace[]) {
    this.endMs = traces.map((t) => (t.endUnixNs === 0n ? Infinity : Number(t.endUnixNs / 1_000_000n)));
  }

  /** The names of the traces the event belongs to (shared: do not change the array). */
  match(event: { kind: Kind; irq: number; durationNs: bigint }, nowMs = Date.now()): string[] {
    const line = event.kind === Kind.IrqLine;
    let mask = 0;
    for (let i = 0; i < this.traces.length; i++) {
      const t = this.traces[i];
      if (!t || (this.endMs[i] ?? Infinity) <= nowMs || event.durationNs < t.thresholdNs) continue;
      if (t.all ? event.kind !== Kind.SoftirqsOff || t.softirqs : line && t.irqs.includes(event.irq)) mask += 2 ** i;
    }
    let names = this.answers.get(mask);
    if (!names) {
      names = this.traces.filter((_, i) => Math.floor(mask / 2 ** i) % 2 === 1).map((t) => t.name);
      this.answers.set(mask, names);
    }
    return names;
  }
}

/** The names of the traces an event belongs to. */
export function tracesOf(event: { kind: Kind; irq: number; durationNs: bigint }, traces: Trace[], nowUnixNs = BigInt(Date.now()) * 1_000_000n): string[] {
  return [...new TraceMatcher(traces).match(event, Number(nowUnixNs / 1_000_000n))];
}
