// A kernel record made into the protocol's Event: symbolized sites, stack and
// lock, how each end was timed, and the task attributed to its cgroup,
// container and pod.
import { irqtrace, toLong } from '@irqtrace/proto';
import type { CgroupAttribution } from '../attribution/cgroup.js';
import type { Enrichment } from '../attribution/enrich.js';
import { Backend, Edge, Kind, Method, RecordFlag } from '../records/layout.js';
import type { SectionRecord } from '../records/decode.js';
import type { CodeLocation } from '../records/code.js';
import type { Kallsyms, Symbol as KernelSymbol } from '../symbols/kallsyms.js';

const pb = irqtrace.v1;

export const SECTION_KINDS: Record<Kind, irqtrace.v1.SectionKind> = {
  [Kind.IrqsOff]: pb.SectionKind.SECTION_KIND_IRQS_OFF,
  [Kind.SoftirqsOff]: pb.SectionKind.SECTION_KIND_SOFTIRQS_OFF,
  [Kind.IrqLine]: pb.SectionKind.SECTION_KIND_IRQ_LINE,
};
export const METHODS: Record<Method, irqtrace.v1.Method> = {
  [Method.Exact]: pb.Method.METHOD_EXACT,
  [Method.Sampled]: pb.Method.METHOD_SAMPLED,
  [Method.Hybrid]: pb.Method.METHOD_HYBRID,
};
const BACKENDS: Record<Backend, irqtrace.v1.Backend> = {
  [Backend.Kmod]: pb.Backend.BACKEND_KMOD,
  [Backend.Ebpf]: pb.Backend.BACKEND_EBPF,
};

const EDGE_SOURCES: Record<Edge, irqtrace.v1.EdgeSource> = {
  [Edge.None]: pb.EdgeSource.EDGE_SOURCE_UNSPECIFIED,
  [Edge.Tracepoint]: pb.EdgeSource.EDGE_SOURCE_TRACEPOINT,
  [Edge.Lock]: pb.EdgeSource.EDGE_SOURCE_LOCK,
  [Edge.Handler]: pb.EdgeSource.EDGE_SOURCE_HANDLER,
  [Edge.Sample]: pb.EdgeSource.EDGE_SOURCE_SAMPLE,
  [Edge.Schedule]: pb.EdgeSource.EDGE_SOURCE_SCHEDULE,
};

/** Every Edge there is, made once (frozen, shared by the events, their bytes cached by the encoder). */
const EDGES = new Map<number, irqtrace.v1.IEdge>();
for (const source of Object.values(Edge)) {
  if (typeof source !== 'number') continue;
  for (const exact of [false, true]) EDGES.set(source * 2 + Number(exact), Object.freeze({ source: EDGE_SOURCES[source], exact }));
}

function edgeOf(by: Edge, exact: boolean): irqtrace.v1.IEdge | null {
  return EDGES.get(by * 2 + Number(exact)) ?? null;
}

function frameAt(address: bigint, s: KernelSymbol | undefined): irqtrace.v1.IFrame {
  return s
    ? { address: toLong(address), symbol: s.name, offset: toLong(s.offset), module: s.module }
    : { address: toLong(address) };
}

/** A code address (stack frame, site, handler) as a Frame. */
export function frameOf(syms: Kallsyms, address: bigint): irqtrace.v1.IFrame {
  return frameAt(address, syms.lookup(address));
}

/** A data address (a lock's) as a Frame: named by the data symbol it is in, never by code. */
export function dataFrameOf(syms: Kallsyms, address: bigint): irqtrace.v1.IFrame {
  return frameAt(address, syms.lookupData(address));
}

// Frames are made once per address and table (stacks share most of theirs),
// and a record's sites and stack once per interned code location: a storm
// from a few code paths symbolizes each path once. Events share these
// objects, so they are frozen. The address cache is bounded: cleared when full.
const FRAME_CACHE_MAX = 100_000;

interface SymbolizedCode {
  disableSite: irqtrace.v1.ISite | null;
  enableSite: irqtrace.v1.ISite | null;
  stack: readonly irqtrace.v1.IFrame[];
}

class SymbolCaches {
  private readonly frames = new Map<bigint, irqtrace.v1.IFrame>();
  private readonly locks = new Map<bigint, irqtrace.v1.IFrame>();
  private readonly codes = new WeakMap<CodeLocation, SymbolizedCode>();

  constructor(private readonly syms: Kallsyms) {}

  frame(address: bigint): irqtrace.v1.IFrame {
    return this.cached(this.frames, address, frameOf);
  }

  /** A lock's address: data, not code. */
  lock(address: bigint): irqtrace.v1.IFrame {
    return this.cached(this.locks, address, dataFrameOf);
  }

  private cached(cache: Map<bigint, irqtrace.v1.IFrame>, address: bigint, make: typeof frameOf): irqtrace.v1.IFrame {
    let frame = cache.get(address);
    if (!frame) {
      if (cache.size >= FRAME_CACHE_MAX) cache.clear();
      frame = Object.freeze(make(this.syms, address));
      cache.set(address, frame);
    }
    return frame;
  }

  code(code: CodeLocation): SymbolizedCode {
    let symbolized = this.codes.get(code);
    if (!symbolized) {
      symbolized = Object.freeze({
        disableSite: this.site(code.disableIp, code.disableParentIp),
        enableSite: this.site(code.enableIp, code.enableParentIp),
        stack: Object.freeze(code.frames.map((f) => this.frame(f))),
      });
      this.codes.set(code, symbolized);
    }
    return symbolized;
  }

  private site(ip: bigint, parentIp: bigint): irqtrace.v1.ISite | null {
    if (ip === 0n) return null;
    return Object.freeze({ ip: this.frame(ip), parentIp: parentIp ? this.frame(parentIp) : null });
  }
}

const caches = new WeakMap<Kallsyms, SymbolCaches>();

function cachesOf(syms: Kallsyms): SymbolCaches {
  let c = caches.get(syms);
  if (!c) {
    c = new SymbolCaches(syms);
    caches.set(syms, c);
  }
  return c;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A uint64 field's value: a number while exact (no Long made), else a Long. */
export function uint64Of(value: bigint): number | ReturnType<typeof toLong> {
  return value <= MAX_SAFE ? Number(value) : toLong(value);
}

interface TaskEntry {
  tgid: number;
  comm: string;
  cgroupId: bigint;
  who: CgroupAttribution | undefined;
  task: irqtrace.v1.ITask;
}

// The events of one task share its Task object (frozen), and so its encoding,
// while nothing about the task changes. Bounded: cleared when full.
const TASKS_MAX = 65_536;
const tasks = new Map<number, TaskEntry>();

function taskOf(pid: number, tgid: number, comm: string, cgroupId: bigint, who: CgroupAttribution | undefined): irqtrace.v1.ITask {
  const hit = tasks.get(pid);
  if (hit && hit.tgid === tgid && hit.comm === comm && hit.cgroupId === cgroupId && hit.who === who) return hit.task;
  const task = Object.freeze({
    pid,
    tgid,
    comm,
    cgroupId: uint64Of(cgroupId),
    cgroupPath: who?.path ?? '',
    containerId: who?.containerId ?? '',
    podUid: who?.podUid ?? '',
    podNamespace: who?.podNamespace ?? '',
    podName: who?.podName ?? '',
  });
  if (tasks.size >= TASKS_MAX) tasks.clear();
  tasks.set(pid, { tgid, comm, cgroupId, who, task });
  return task;
}

export interface Attribution {
  task?: CgroupAttribution;
  enablingTask?: CgroupAttribution;
  enrichment?: Enrichment;
  /** The interrupt code the section belongs to (pipeline/context.ts); absent: the task's. */
  context?: irqtrace.v1.IContext | null;
}

/**
 * The Event of a record. Its sites and stack are shared with other events of
 * the same code path, its tasks with other events of the same tasks (all
 * frozen): copy them before changing them.
 */
export function toEvent(rec: SectionRecord, syms: Kallsyms, who: Attribution = {}): irqtrace.v1.IEvent {
  const sites = (rec.flags & RecordFlag.SitesValid) !== 0;
  const symbols = cachesOf(syms);
  const code = symbols.code(rec.code);
  // The host's (the vCPU was descheduled), or a handler's: the task it interrupted is named, not its pod.
  const hypervisor = (rec.flags & RecordFlag.Hypervisor) !== 0;
  const interrupted = Boolean(who.context) || hypervisor;
  return {
    kind: SECTION_KINDS[rec.kind],
    method: METHODS[rec.method],
    backend: BACKENDS[rec.backend],
    cpu: rec.cpu,
    startNs: uint64Of(rec.startNs),
    durationNs: uint64Of(rec.durationNs),
    errorBoundNs: uint64Of(rec.errorNs),
    irq: rec.irq,
    task: taskOf(rec.pid, rec.tgid, rec.comm, interrupted ? 0n : rec.cgroupId, interrupted ? undefined : who.task),
    enablingTask: (rec.flags & RecordFlag.EnablerValid) !== 0 ? taskOf(rec.enablePid, rec.enableTgid, rec.enableComm, 0n, who.enablingTask) : null,
    disableSite: sites ? code.disableSite : null,
    enableSite: sites ? code.enableSite : null,
    // The protobuf types ask for a mutable array; nothing downstream changes it.
    stack: code.stack as irqtrace.v1.IFrame[],
    stackTruncated: (rec.flags & RecordFlag.StackTruncated) !== 0,
    // Shared by the events of one offender within its cache time: not copied.
    enrichment: interrupted ? null : (who.enrichment ?? null),
    ...(who.context ? { context: who.context } : {}),
    start: edgeOf(rec.startBy, (rec.flags & RecordFlag.StartExact) !== 0),
    end: edgeOf(rec.endBy, (rec.flags & RecordFlag.EndExact) !== 0),
    lock: rec.lock ? symbols.lock(rec.lock) : null,
    ...(hypervisor ? { hypervisor } : {}),
  };
}
