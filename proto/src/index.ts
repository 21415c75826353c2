// Public API of @irqtrace/proto: the generated messages of proto/irqtrace/v1,
// the gRPC definitions of IngestService and the agent's local AgentLocal, and 64-bit helpers.
export { irqtrace } from './gen/irqtrace.js';
export { ingestServiceDefinition, IngestServiceClient, rawRequestIngestServiceDefinition, rawRequestIngestClientDefinition, RawIngestServiceClient } from './ingest_service.js';
export type { IngestServiceHandlers, ConnectStream, ConnectCall, RawConnectCall, RawConnectStream } from './ingest_service.js';
export { agentLocalServiceDefinition, AgentLocalClient } from './local_service.js';
export type { AgentLocalHandlers, WatchCall, WatchStream } from './local_service.js';
export { toBigInt, toLong } from './uint64.js';
export { PROTOCOL_VERSION } from './version.js';
export { endExact, endsText } from './ends.js';
export type { EventEnds } from './ends.js';
// The wire writer, for code that splices pre-encoded messages (the agent's hot path).
import $protobuf from 'protobufjs/minimal.js';
export const Writer = $protobuf.Writer;
export type Writer = $protobuf.Writer;
// The wire reader, for code that scans messages without decoding all of them (the ingest's hot path).
export const Reader = $protobuf.Reader;
export type Reader = $protobuf.Reader;
// Field numbers and tags of every message, for code that writes or scans the wire by hand.
export { FIELDS, TAGS } from './gen/fields.js';
// The kernel side's configuration bounds and defaults, from the uapi header.
export { LIMITS, durationText } from './limits.js';
