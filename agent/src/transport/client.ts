// The agent's end of IngestService.Connect: Hello, then every unacked batch
// in seq order (a window of them in flight), heartbeats, backend state; acks
// free the outbox; NodeConfig drives the backend. A broken stream reconnects
// with jittered exponential backoff and re-sends whatever is unacked; the
// ingest deduplicates by node/boot/seq.
import * as grpc from '@grpc/grpc-js';
import { RawIngestServiceClient, TAGS, irqtrace, toBigInt, toLong, Writer } from '@irqtrace/proto';
import type { RawConnectStream } from '@irqtrace/proto';
import type { Outbox } from './outbox.js';

type IngestMessage = irqtrace.v1.IngestMessage;

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface TlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  serverName?: string;
}

export interface IngestClientOptions {
  /** host:port of the ingest. */
  address: string;
  /** TLS (mTLS with cert and key); plaintext when undefined. */
  tls?: TlsOptions;
  /** Built at each connect, so last_acked_seq is current. */
  hello: () => irqtrace.v1.IHello;
  outbox: Outbox;
  /** Batches in flight before waiting for acks. */
  window?: number;
  heartbeatMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  onConfig?: (config: irqtrace.v1.INodeConfig) => void;
  onRefusal?: (reason: string) => void;
  log?: Logger;
}

// Requests go out as bytes (RawIngestServiceClient): batches are kept encoded in the
// outbox, and wrapping one as AgentMessage.batch costs a header, not a re-encode.
/** AgentMessage{batch} from an encoded EventBatch: tag, length, bytes. */
export function wrapBatch(batch: Uint8Array): Buffer {
  const bytes = Writer.create().uint32(TAGS.AgentMessage.batch).bytes(batch).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function encode(message: irqtrace.v1.IAgentMessage): Buffer {
  return Buffer.from(irqtrace.v1.AgentMessage.encode(message).finish());
}

export class IngestClient {
  private client: InstanceType<typeof RawIngestServiceClient> | undefined;
  private stream: RawConnectStream | undefined;
  private sentUpTo = 0n;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  connected = false;
  /** Connections made, and batches sent more than once (after reconnects). */
  connects = 0;
  resent = 0;

  constructor(private readonly o: IngestClientOptions) {}

  start(): void {
    const creds = this.o.tls
      ? grpc.credentials.createSsl(this.o.tls.ca ?? null, this.o.tls.key ?? null, this.o.tls.cert ?? null)
      : grpc.credentials.createInsecure();
    const options: Partial<grpc.ChannelOptions> = this.o.tls?.serverName ? { 'grpc.ssl_target_name_override': this.o.tls.serverName } : {};
    this.client = new RawIngestServiceClient(this.o.address, creds, options);
    this.connect();
    this.heartbeat = setInterval(() => {
      if (this.connected) this.write(encode({ heartbeat: { sentUnixNs: toLong(BigInt(Date.now()) * 1_000_000n), unackedBatches: toLong(this.o.outbox.size) } }));
    }, this.o.heartbeatMs ?? 10_000);
  }

  private connect(): void {
    if (this.stopped || !this.client) return;
    const stream = this.client.connect();
    this.stream = stream;
    this.connects++;
    // Everything unacked goes again: the ingest may have lost it with the last stream.
    const resendFrom = this.o.outbox.ackedSeq;
    if (this.sentUpTo > resendFrom) this.resent += Number(this.sentUpTo - resendFrom);
    this.sentUpTo = resendFrom;
    stream.on('data', (m: IngestMessage) => { this.onMessage(m); });
    stream.on('error', (err: grpc.ServiceError) => { this.broken(stream, err.details || err.message); });
    stream.on('end', () => { this.broken(stream, 'stream ended'); });
    stream.write(encode({ hello: this.o.hello() }));
    this.connected = true;
    this.pump();
  }

  private onMessage(m: IngestMessage): void {
    this.attempt = 0;
    if (m.ack) {
      this.o.outbox.ack(toBigInt(m.ack.upToSeq ?? 0));
      this.pump();
    } else if (m.config) {
      this.o.onConfig?.(m.config);
    } else if (m.refusal) {
      const reason = m.refusal.reason ?? '';
      this.o.log?.warn({ reason }, 'the ingest refused this agent');
      this.o.onRefusal?.(reason);
      this.stream?.cancel();
    }
  }

  private broken(stream: RawConnectStream, why: string): void {
    if (stream !== this.stream) return;
    this.stream = undefined;
    this.connected = false;
    if (this.stopped) return;
    // Full jitter: a fleet of agents does not reconnect in step.
    const cap = Math.min(this.o.backoffMaxMs ?? 30_000, (this.o.backoffBaseMs ?? 500) * 2 ** this.attempt);
    const delay = Math.round(Math.random() * cap);
    this.attempt = Math.min(this.attempt + 1, 16);
    this.o.log?.warn({ why, retryInMs: delay, unacked: this.o.outbox.size }, 'ingest stream broken; reconnecting');
    this.timer = setTimeout(() => { this.connect(); }, delay);
  }

  private write(bytes: Buffer): void {
    this.stream?.write(bytes);
  }

  /** Sends batches up to the window; call after adding to the outbox. */
  pump(): void {
    if (!this.connected) return;
    const window = BigInt(this.o.window ?? 64);
    for (const { seq, bytes } of this.o.outbox.after(this.sentUpTo)) {
      if (seq - this.o.outbox.ackedSeq > window) break;
      this.write(wrapBatch(bytes));
      this.sentUpTo = seq;
    }
  }

  sendState(state: irqtrace.v1.IBackendState): void {
    if (this.connected) this.write(encode({ state }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    const stream = this.stream;
    this.stream = undefined;
    this.connected = false;
    if (stream) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        stream.once('error', () => { resolve(); });
        stream.once('end', () => { resolve(); });
        stream.end();
        timer = setTimeout(resolve, 2000);
      });
      clearTimeout(timer);
    }
    this.client?.close();
  }
}
