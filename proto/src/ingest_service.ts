// gRPC binding of IngestService.Connect using the protobufjs static classes
// (no runtime .proto loading: one definition of each message, type-checked).
import * as grpc from '@grpc/grpc-js';
import { irqtrace } from './gen/irqtrace.js';
import { deserialize, serialize } from './serialize.js';

type AgentMessage = irqtrace.v1.AgentMessage;
type IngestMessage = irqtrace.v1.IngestMessage;

export const ingestServiceDefinition = {
  connect: {
    path: '/irqtrace.v1.IngestService/Connect',
    requestStream: true,
    responseStream: true,
    requestSerialize: serialize(irqtrace.v1.AgentMessage),
    requestDeserialize: deserialize(irqtrace.v1.AgentMessage),
    responseSerialize: serialize(irqtrace.v1.IngestMessage),
    responseDeserialize: deserialize(irqtrace.v1.IngestMessage),
  },
} satisfies grpc.ServiceDefinition;

/** Server side of one Connect stream. */
export type ConnectCall = grpc.ServerDuplexStream<AgentMessage, IngestMessage>;

export interface IngestServiceHandlers extends grpc.UntypedServiceImplementation {
  connect: grpc.handleBidiStreamingCall<AgentMessage, IngestMessage>;
}

/** Client side of one Connect stream. */
export type ConnectStream = grpc.ClientDuplexStream<AgentMessage, IngestMessage>;

/** A client class of IngestService whose connect() opens a Stream. */
type IngestClientClass<Stream> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ChannelOptions>,
) => grpc.Client & { connect(metadata?: grpc.Metadata, options?: Partial<grpc.CallOptions>): Stream };

function clientClass<Stream>(definition: grpc.ServiceDefinition): IngestClientClass<Stream> {
  return grpc.makeGenericClientConstructor(definition, 'irqtrace.v1.IngestService') as unknown as IngestClientClass<Stream>;
}

export const IngestServiceClient = clientClass<ConnectStream>(ingestServiceDefinition);

/**
 * The same service with requests left as bytes, for a server that scans them
 * itself (the ingest passes events through without decoding them).
 */
export const rawRequestIngestServiceDefinition = {
  connect: { ...ingestServiceDefinition.connect, requestDeserialize: (bytes: Buffer): Buffer => bytes },
} satisfies grpc.ServiceDefinition;

/** Server side of one Connect stream whose requests are bytes. */
export type RawConnectCall = grpc.ServerDuplexStream<Buffer, IngestMessage>;

/**
 * The same service with requests sent as bytes, for a client that keeps them
 * encoded (the agent's batches wait in its outbox as bytes).
 */
export const rawRequestIngestClientDefinition = {
  connect: { ...ingestServiceDefinition.connect, requestSerialize: (bytes: Buffer): Buffer => bytes, requestDeserialize: (bytes: Buffer): Buffer => bytes },
} satisfies grpc.ServiceDefinition;

/** Client side of one Connect stream whose requests are bytes. */
export type RawConnectStream = grpc.ClientDuplexStream<Buffer, IngestMessage>;

export const RawIngestServiceClient = clientClass<RawConnectStream>(rawRequestIngestClientDefinition);
