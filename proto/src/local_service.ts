// gRPC binding of AgentLocal.Watch (local.proto), the agent's unix-socket
// service for `irqtrace record`, with the protobufjs static classes.
import * as grpc from '@grpc/grpc-js';
import { irqtrace } from './gen/irqtrace.js';
import { deserialize, serialize } from './serialize.js';

type WatchRequest = irqtrace.v1.WatchRequest;
type WatchMessage = irqtrace.v1.WatchMessage;

export const agentLocalServiceDefinition = {
  watch: {
    path: '/irqtrace.v1.AgentLocal/Watch',
    requestStream: false,
    responseStream: true,
    requestSerialize: serialize<irqtrace.v1.IWatchRequest>(irqtrace.v1.WatchRequest),
    requestDeserialize: deserialize(irqtrace.v1.WatchRequest),
    responseSerialize: serialize<irqtrace.v1.IWatchMessage>(irqtrace.v1.WatchMessage),
    responseDeserialize: deserialize(irqtrace.v1.WatchMessage),
  },
} satisfies grpc.ServiceDefinition;

/** Server side of one Watch stream: it writes plain message objects. */
export type WatchCall = grpc.ServerWritableStream<WatchRequest, irqtrace.v1.IWatchMessage>;

export interface AgentLocalHandlers extends grpc.UntypedServiceImplementation {
  watch: grpc.handleServerStreamingCall<WatchRequest, irqtrace.v1.IWatchMessage>;
}

/** Client side of one Watch stream. */
export type WatchStream = grpc.ClientReadableStream<WatchMessage>;

type AgentLocalClientClass = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ChannelOptions>,
) => grpc.Client & { watch(request: irqtrace.v1.IWatchRequest, metadata?: grpc.Metadata, options?: Partial<grpc.CallOptions>): WatchStream };

export const AgentLocalClient = grpc.makeGenericClientConstructor(agentLocalServiceDefinition, 'irqtrace.v1.AgentLocal') as unknown as AgentLocalClientClass;
