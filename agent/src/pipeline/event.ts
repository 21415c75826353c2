// A kernel record made into the protocol's Event: symbolized sites and
// stack, and the task attributed to its cgroup, container and pod.
import { irqtrace, toLong } from '@irqtrace/proto';
import type { CgroupAttribution } from '../attribution/cgroup.js';
import type { Enrichment } from '../attribution/enrich.js';
import { Backend, Kind, Method, RecordFlag } from '../records/layout.js';
import type { SectionRecord } from '../records/decode.js';
import type { Kallsyms } from '../symbols/kallsyms.js';

const pb = irqtrace.v1;

export const SECTION_KINDS: Record<Kind, irqtrace.v1.SectionKind> = {
  [Kind.IrqsOff]: pb.SectionKind.SECTION_KIND_IRQS_OFF,
  [Kind.SoftirqsOff]: pb.SectionKind.SECTION_KIND_SOFTIRQS_OFF,
  [Kind.IrqLine]: pb.SectionKind.SECTION_KIND_IRQ_LINE,
};
const METHODS: Record<Method, irqtrace.v1.Method> = {
  [Method.Exact]: pb.Method.METHOD_EXACT,
  [Method.Sampled]: pb.Method.METHOD_SAMPLED,
};
const BACKENDS: Record<Backend, irqtrace.v1.Backend> = {
  [Backend.Kmod]: pb.Backend.BACKEND_KMOD,
  [Backend.Ebpf]: pb.Backend.BACKEND_EBPF,
};

export function frameOf(syms: Kallsyms, address: bigint): irqtrace.v1.IFrame {
  const s = syms.lookup(address);
  return s
    ? { address: toLong(address), symbol: s.name, offset: toLong(s.offset), module: s.module }
    : { address: toLong(address) };
}

// Stacks repeat (a storm comes from a few code paths): frames are made once
// per address and table. Bounded: cleared when full, and per table.
const FRAME_CACHE_MAX = 100_000;
const frameCaches = new WeakMap<Kallsyms, Map<bigint, irqtrace.v1.IFrame>>();

function cachedFrame(syms: Kallsyms, address: bigint): irqtrace.v1.IFrame {
  let cache = frameCaches.get(syms);
  if (!cache) {
    cache = new Map();
    frameCaches.set(syms, cache);
  }
  let frame = cache.get(address);
  if (!frame) {
    if (cache.size >= FRAME_CACHE_MAX) cache.clear();
    frame = frameOf(syms, address);
    cache.set(address, frame);
  }
  return frame;
}

function siteOf(syms: Kallsyms, ip: bigint, parentIp: bigint): irqtrace.v1.ISite | null {
  if (ip === 0n) return null;
  return { ip: cachedFrame(syms, ip), parentIp: parentIp ? cachedFrame(syms, parentIp) : null };
}

function taskOf(pid: number, tgid: number, comm: string, cgroupId: bigint, who: CgroupAttribution | undefined): irqtrace.v1.ITask {
  return {
    pid,
    tgid,
    comm,
    cgroupId: toLong(cgroupId),
    cgroupPath: who?.path ?? '',
    containerId: who?.containerId ?? '',
    podUid: who?.podUid ?? '',
  };
}

export interface Attribution {
  task?: CgroupAttribution;
  enablingTask?: CgroupAttribution;
  enrichment?: Enrichment;
}

export function toEvent(rec: SectionRecord, syms: Kallsyms, who: Attribution = {}): irqtrace.v1.IEvent {
  const sites = (rec.flags & RecordFlag.SitesValid) !== 0;
  return {
    kind: SECTION_KINDS[rec.kind],
    method: METHODS[rec.method],
    backend: BACKENDS[rec.backend],
    cpu: rec.cpu,
    startNs: toLong(rec.startNs),
    durationNs: toLong(rec.durationNs),
    errorBoundNs: toLong(rec.errorNs),
    irq: rec.irq,
    task: taskOf(rec.pid, rec.tgid, rec.comm, rec.cgroupId, who.task),
    enablingTask: (rec.flags & RecordFlag.EnablerValid) !== 0 ? taskOf(rec.enablePid, rec.enableTgid, rec.enableComm, 0n, who.enablingTask) : null,
    disableSite: sites ? siteOf(syms, rec.disableIp, rec.disableParentIp) : null,
    enableSite: sites ? siteOf(syms, rec.enableIp, rec.enableParentIp) : null,
    stack: rec.frames.map((f) => cachedFrame(syms, f)),
    stackTruncated: (rec.flags & RecordFlag.StackTruncated) !== 0,
    enrichment: who.enrichment ? pb.Enrichment.create(who.enrichment) : null,
  };
}
