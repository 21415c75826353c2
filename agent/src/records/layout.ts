// The binary layout of kmod/include/uapi/irqtrace.h, for the agent's decoder.
// test/unit/uapi_layout.test.ts compiles the C header and checks every
// offset and size here against the compiler's, so the two cannot drift.

export const ABI_VERSION = 4;

export const MAGIC = {
  record: 0x72515249,
  hist: 0x68515249,
  counters: 0x63515249,
} as const;

export const COMM_LEN = 16;
export const MAX_FRAMES = 32;
export const HIST_BUCKETS = 64;

export enum Kind {
  IrqsOff = 1,
  SoftirqsOff = 2,
  IrqLine = 3,
}

export enum Method {
  Exact = 1,
  Sampled = 2,
  /** Each end exact where it is hookable, else sampled: Edge and the Start/EndExact flags say, per record. */
  Hybrid = 3,
}

/** What timed one end of a section (irqtrace_record.start_by, .end_by). */
export enum Edge {
  /** Not said (IRQ lines). */
  None = 0,
  /** irq_disable/irq_enable tracepoints: exact. */
  Tracepoint = 1,
  /** An irq-saving lock function (or its unlock): exact. */
  Lock = 2,
  /** An interrupt handler's entry or exit. */
  Handler = 3,
  /** The sampler's timer: at the start its expiry (up to error_ns late); at the end its late interrupt (exact). */
  Sample = 4,
  /** The scheduler's own path: __schedule()'s first call with interrupts off, the next task's finish_task_switch() (exact). */
  Schedule = 5,
}

export enum Backend {
  Kmod = 1,
  Ebpf = 2,
}

export enum RecordFlag {
  StackTruncated = 0x01,
  EnablerValid = 0x02,
  SitesValid = 0x04,
  /** start_ns is exact, not a bound. */
  StartExact = 0x08,
  /** start_ns + duration_ns is exact. */
  EndExact = 0x10,
  /** Sampled: the vCPU's steal clock ran for at least half of it (the host had descheduled it). */
  Hypervisor = 0x20,
}

/** Where a section ran (enum irqtrace_context). */
export enum Context {
  Task = 0,
  Hardirq = 1,
  Timer = 2,
  Softirq = 3,
  Nmi = 4,
  Vector = 5,
}

/** What runs besides the irqs-off method (irqtrace_counters.running). */
export enum Running {
  Softirqs = 0x01,
  IrqLines = 0x02,
}

export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}

export interface StructLayout {
  readonly cName: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

const f = (offset: number, size: number): FieldLayout => ({ offset, size });

/** Preamble shared by every item: magic u32, version u16, size u16. */
const preambleFields = { magic: f(0, 4), version: f(4, 2), size: f(6, 2) };
export const PREAMBLE_SIZE = 8;

export const RECORD = {
  cName: 'irqtrace_record',
  size: 168,
  fields: {
    kind: f(8, 1),
    method: f(9, 1),
    backend: f(10, 1),
    flags: f(11, 1),
    cpu: f(12, 2),
    nr_frames: f(14, 2),
    irq: f(16, 4),
    enable_cpu: f(20, 4),
    seq: f(24, 8),
    start_ns: f(32, 8),
    duration_ns: f(40, 8),
    error_ns: f(48, 8),
    cgroup_id: f(56, 8),
    pid: f(64, 4),
    tgid: f(68, 4),
    comm: f(72, COMM_LEN),
    enable_pid: f(88, 4),
    enable_tgid: f(92, 4),
    enable_comm: f(96, COMM_LEN),
    disable_ip: f(112, 8),
    disable_parent_ip: f(120, 8),
    enable_ip: f(128, 8),
    enable_parent_ip: f(136, 8),
    context: f(144, 1),
    start_by: f(145, 1),
    end_by: f(146, 1),
    context_nr: f(148, 4),
    context_fn: f(152, 8),
    lock: f(160, 8),
    frames: f(168, 0),
  },
} as const satisfies StructLayout;

export const HIST = {
  cName: 'irqtrace_hist',
  size: 560,
  fields: {
    kind: f(8, 1),
    method: f(9, 1),
    backend: f(10, 1),
    cpu: f(12, 4),
    irq: f(16, 4),
    count: f(24, 8),
    sum_ns: f(32, 8),
    max_ns: f(40, 8),
    buckets: f(48, 8 * HIST_BUCKETS),
  },
} as const satisfies StructLayout;

export const COUNTERS = {
  cName: 'irqtrace_counters',
  size: 72,
  fields: {
    backend: f(8, 1),
    irqs_off_method: f(9, 1),
    running: f(10, 1),
    cpu: f(12, 4),
    seen: f(16, 8),
    recorded: f(24, 8),
    dropped_ring: f(32, 8),
    dropped_guard: f(40, 8),
    idle_excluded: f(48, 8),
    nmi_skipped: f(56, 8),
    samples: f(64, 8),
  },
} as const satisfies StructLayout;

/** Every item's preamble, for the decoder's framing. */
export const PREAMBLE = preambleFields;

/** Size of a record carrying nrFrames stack frames. */
export function recordSize(nrFrames: number): number {
  return RECORD.size + 8 * nrFrames;
}
