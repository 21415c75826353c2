// Public API of @irqtrace/agent.
export {
  ABI_VERSION, MAGIC, PREAMBLE, PREAMBLE_SIZE, RECORD, HIST, COUNTERS, COMM_LEN, MAX_FRAMES, HIST_BUCKETS,
  Kind, Method, Backend, RecordFlag, recordSize,
} from './records/layout.js';
export type { FieldLayout, StructLayout } from './records/layout.js';
export { decodeItems, decodeAll, DecodeError } from './records/decode.js';
export type { Item, SectionRecord, HistItem, CountersItem } from './records/decode.js';
export { Kallsyms } from './symbols/kallsyms.js';
export type { Symbol } from './symbols/kallsyms.js';
