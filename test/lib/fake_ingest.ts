// A stand-in for the operator's ingest in tests: a real grpc-js server on
// loopback that records what agents send, answers hellos with a NodeConfig,
// acks batches (up to a settable seq), and can die and come back on its port.
import * as grpc from '@grpc/grpc-js';
import { irqtrace, ingestServiceDefinition, toBigInt, toLong } from '@irqtrace/proto';
import type { ConnectCall } from '@irqtrace/proto';

const v1 = irqtrace.v1;

export class FakeIngest {
  server = new grpc.Server();
  received: bigint[] = [];
  hellos: irqtrace.v1.IHello[] = [];
  batches: irqtrace.v1.IEventBatch[] = [];
  states: irqtrace.v1.IBackendState[] = [];
  heartbeats = 0;
  ackUpTo = Infinity;
  port = 0;
  /** What a hello is answered with. */
  config: irqtrace.v1.INodeConfig = { version: toLong(7n), traces: [{ name: 'lab', thresholdNs: toLong(500_000n) }] };
  private calls: ConnectCall[] = [];

  /** Listens on 127.0.0.1:port (0: any); TLS (and mTLS) when given server credentials. */
  async start(port = 0, credentials = grpc.ServerCredentials.createInsecure()): Promise<void> {
    this.server = new grpc.Server();
    this.server.addService(ingestServiceDefinition, {
      connect: (call: ConnectCall) => {
        this.calls.push(call);
        call.on('data', (m: irqtrace.v1.AgentMessage) => {
          if (m.hello) {
            this.hellos.push(m.hello);
            call.write(v1.IngestMessage.create({ config: this.config }));
          }
          if (m.state) this.states.push(m.state);
          if (m.heartbeat) this.heartbeats++;
          if (m.batch) {
            const seq = toBigInt(m.batch.seq);
            this.received.push(seq);
            this.batches.push(m.batch);
            if (m.batch.state) this.states.push(m.batch.state);
            if (Number(seq) <= this.ackUpTo) call.write(v1.IngestMessage.create({ ack: { upToSeq: m.batch.seq } }));
          }
        });
        call.on('end', () => { call.end(); });
        call.on('error', () => {});
      },
    });
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`127.0.0.1:${port}`, credentials, (err, p) => { if (err) reject(err); else resolve(p); });
    });
  }

  /** Sends a new NodeConfig down every open stream (as the operator does on a spec change). */
  push(config: irqtrace.v1.INodeConfig): void {
    this.config = config;
    for (const call of this.calls) call.write(v1.IngestMessage.create({ config }));
  }

  /** Every event received, each once (batches deduplicated by seq). */
  events(): irqtrace.v1.IEvent[] {
    const seen = new Set<string>();
    const out: irqtrace.v1.IEvent[] = [];
    for (const b of this.batches) {
      const seq = toBigInt(b.seq).toString();
      if (seen.has(seq)) continue;
      seen.add(seq);
      out.push(...(b.events ?? []));
    }
    return out;
  }

  kill(): void {
    this.server.forceShutdown();
    this.calls = [];
  }
}
