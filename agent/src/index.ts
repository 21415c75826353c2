// Public API of @irqtrace/agent.
export {
  ABI_VERSION, MAGIC, PREAMBLE, PREAMBLE_SIZE, RECORD, HIST, COUNTERS, COMM_LEN, MAX_FRAMES, HIST_BUCKETS,
  Kind, Method, Edge, Backend, RecordFlag, Context, Running, recordSize,
} from './records/layout.js';
export type { FieldLayout, StructLayout } from './records/layout.js';
export { decodeItems, decodeAll, DecodeError } from './records/decode.js';
export type { Item, SectionRecord, HistItem, CountersItem } from './records/decode.js';
export { CodeInterner } from './records/code.js';
export type { CodeLocation } from './records/code.js';
export { ItemStreamDecoder } from './records/stream.js';
export { Kallsyms } from './symbols/kallsyms.js';
export type { Symbol } from './symbols/kallsyms.js';
export { attributeCgroup, cgroupPathOf } from './attribution/cgroup.js';
export type { CgroupAttribution } from './attribution/cgroup.js';
export { procFs } from './attribution/procfs.js';
export type { ProcFs } from './attribution/procfs.js';
export { TaskAttributor } from './attribution/tasks.js';
export { CgroupIndex } from './attribution/cgroup_index.js';
export { enrich, OffenderEnricher } from './attribution/enrich.js';
export { TtlCache } from './attribution/ttl_cache.js';
export type { Enrichment } from './attribution/enrich.js';
export { DEFAULT_KERNEL_CONFIG, ConfigError, parseDurationNs, validateKernelConfig, kernelSettings } from './config/kernel_config.js';
export type { KernelConfig, MethodChoice, BackendChoice } from './config/kernel_config.js';
export { KmodBackend, stealClockSetting } from './backend/kmod.js';
export type { KmodOptions } from './backend/kmod.js';
export { EbpfBackend } from './backend/ebpf.js';
export type { EbpfOptions } from './backend/ebpf.js';
export { startBackend } from './backend/select.js';
export type { BackendOptions, Started } from './backend/select.js';
export { BackendError } from './backend/types.js';
export type { BackendName, BackendState, BackendSink, KernelBackend, Stats } from './backend/types.js';
export { SymbolSource } from './symbols/source.js';
export { toEvent, frameOf, dataFrameOf } from './pipeline/event.js';
export type { Attribution } from './pipeline/event.js';
export { Outbox } from './transport/outbox.js';
export type { OutboxOptions } from './transport/outbox.js';
export { IngestClient, wrapBatch } from './transport/client.js';
export type { IngestClientOptions, TlsOptions, Logger } from './transport/client.js';
export { Batcher } from './pipeline/batcher.js';
export type { BatcherOptions } from './pipeline/batcher.js';
export { TraceMatcher, mergeTraces, resolveTraceIrqNames, traceFromProto, traceToProto, tracesOf } from './config/traces.js';
export type { Trace, Merged } from './config/traces.js';
export { TraceTimeline } from './config/trace_timeline.js';
export { AgentMetrics } from './daemon/metrics.js';
