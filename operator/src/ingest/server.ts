// The ingest: agents' IngestService.Connect streams in, JetStream out
// (DESIGN.md §3). Per stream: Hello first (else refused), then the node's
// config, pushed again whenever it changes; each batch is split per trace,
// published, and acked to the agent only once every PubAck is in. Batches of a
// stream are handled in order (acks are cumulative) and at most maxPending
// wait: then the stream is not read until one is published (backpressure
// through HTTP/2 flow control), counted. A failed publish ends that stream, not the process; a malformed
// message ends that stream in grpc-js before it reaches here.
import * as grpc from '@grpc/grpc-js';
import { PROTOCOL_VERSION, Reader, TAGS, irqtrace, rawRequestIngestServiceDefinition, toBigInt, toLong } from '@irqtrace/proto';
import type { RawConnectCall } from '@irqtrace/proto';
import type { Logger } from 'pino';
import type { IngestMetrics } from './metrics.js';
import type { StreamPublisher } from './publisher.js';
import { batchState, scanBatch, splitBatch } from './split.js';
import type { PodDirectory, ScannedBatch } from './split.js';
import { subject } from './subjects.js';
import type { AppliedConfigWriter } from './applied.js';

const pb = irqtrace.v1;
/** Config versions of a stream remembered for the agent's report of which it applied. */
const MAX_SENT_CONFIGS = 16;

/** Each node's effective config, and word when any may have changed. */
export interface NodeConfigSource {
  tracesFor(node: string): irqtrace.v1.ITraceConfig[];
  onChange(listener: () => void): void;
}

export interface IngestTls {
  ca?: Buffer;
  cert: Buffer;
  key: Buffer;
  /** Refuse agents without a certificate signed by ca (mTLS). */
  requireClientCert?: boolean;
}

export interface IngestServerOptions {
  publisher: Pick<StreamPublisher, 'publish'>;
  configs: NodeConfigSource;
  pods: PodDirectory;
  metrics: IngestMetrics;
  log: Logger;
  /** This replica's name, in the state messages. */
  name: string;
  tls?: IngestTls;
  /** Batches of one stream waiting to be published (default 32). */
  maxPending?: number;
  /** Where each node's applied config is recorded (for the controller's finalizers). */
  applied?: Pick<AppliedConfigWriter, 'put' | 'closed'>;
}

interface Agent {
  node: string;
  bootId: string;
  kernelRelease: string;
  call: RawConnectCall;
  /** This stream, among all of every ingest: whose end may mark the node's agent gone. */
  stream: string;
  /** The traces last sent, and their encoding (to push only changes). */
  traces: string[];
  configKey: string;
  /** The traces of each config version sent on this stream (the last few), and the last one the agent applied. */
  sent: Map<bigint, string[]>;
  applied: bigint;
  /** Why the agent's kernel side cannot do what it was sent (its state's reason while it failed), as last recorded. */
  failure: string | undefined;
  /** The traces recorded as running on the node (undefined: not reported on this stream yet). */
  running: string[] | undefined;
  backend: irqtrace.v1.IBackendState | null;
  pending: number;
  chain: Promise<void>;
  closed: boolean;
}

/** Ends the call with this status. (grpc-js sends a server stream's status on an 'error' event; destroy() sends none and leaves the agent waiting.) */
function endWithStatus(call: RawConnectCall, code: grpc.status, details: string): void {
  call.emit('error', Object.assign(new Error(details), { code, details }));
}

interface AgentMessageParts {
  hello?: irqtrace.v1.IHello;
  batch?: ScannedBatch;
  heartbeat?: true;
  state?: irqtrace.v1.IBackendState;
}

/** An AgentMessage's one part: the batch scanned (its events stay bytes), the rest decoded. Throws when malformed. */
function agentMessage(bytes: Uint8Array): AgentMessageParts {
  const r = Reader.create(bytes);
  let parts: AgentMessageParts = {};
  while (r.pos < r.len) {
    const tag = r.uint32();
    if ((tag & 7) !== 2) {
      r.skipType(tag & 7);
      continue;
    }
    const value = r.bytes();
    // A oneof: the last one given wins, as in a decoder.
    switch (tag) {
      case TAGS.AgentMessage.hello: parts = { hello: pb.Hello.decode(value) }; break;
      case TAGS.AgentMessage.batch: parts = { batch: scanBatch(value) }; break;
      case TAGS.AgentMessage.heartbeat: parts = { heartbeat: true }; break;
      case TAGS.AgentMessage.state: parts = { state: pb.BackendState.decode(value) }; break;
      default: break;
    }
  }
  return parts;
}

/** Why a stream's first message is not an acceptable Hello, or undefined. */
export function helloProblem(h: irqtrace.v1.IHello | null | undefined): string | undefined {
  if (!h) return 'the first message must be a Hello';
  if (h.protocolVersion !== PROTOCOL_VERSION) return `protocol version ${h.protocolVersion ?? 0} is not ${PROTOCOL_VERSION}`;
  if (!h.node || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(h.node)) return `hello.node '${h.node ?? ''}' is not a node name`;
  if (!h.bootId) return 'hello.bootId is empty';
  return undefined;
}

export class IngestServer {
  private readonly server = new grpc.Server({ 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_timeout_ms': 10_000 });
  private readonly agents = new Set<Agent>();
  port = 0;
  /** Config versions, one sequence for every stream: numbered from this ingest's start, so a version from another stream is never taken for one of this stream. */
  private lastVersion = BigInt(Date.now()) * 1000n;
  private streams = 0;

  constructor(private readonly o: IngestServerOptions) {
    // Requests stay bytes: batches are scanned and passed through, not decoded (split.ts).
    this.server.addService(rawRequestIngestServiceDefinition, { connect: (call: RawConnectCall) => { this.accept(call); } });
    o.configs.onChange(() => { for (const a of this.agents) this.pushConfig(a); });
  }

  /** Listens on host:port (port 0: any free one). */
  async listen(host: string, port: number): Promise<number> {
    const t = this.o.tls;
    const credentials = t ? grpc.ServerCredentials.createSsl(t.ca ?? null, [{ private_key: t.key, cert_chain: t.cert }], t.requireClientCert ?? false) : grpc.ServerCredentials.createInsecure();
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${host}:${port}`, credentials, (err, p) => { if (err) reject(err); else resolve(p); });
    });
    return this.port;
  }

  /** Nodes connected now. */
  get connected(): string[] {
    return [...this.agents].map((a) => a.node);
  }

  async close(): Promise<void> {
    for (const a of this.agents) a.call.end();
    await new Promise<void>((resolve) => {
      this.server.tryShutdown(() => { resolve(); });
      setTimeout(() => { this.server.forceShutdown(); resolve(); }, 5000).unref();
    });
  }

  private accept(call: RawConnectCall): void {
    let agent: Agent | undefined;
    call.on('data', (bytes: Buffer) => {
      let m: AgentMessageParts;
      try {
        m = agentMessage(bytes);
      } catch (err) {
        this.o.metrics.refused.inc();
        this.o.log.warn({ node: agent?.node, peer: call.getPeer(), err: String(err) }, 'malformed message; ending the stream');
        endWithStatus(call, grpc.status.INVALID_ARGUMENT, `malformed AgentMessage: ${String(err)}`);
        return;
      }
      if (!agent) {
        agent = this.hello(call, m.hello);
        return;
      }
      if (m.batch) this.batch(agent, m.batch);
      else if (m.heartbeat) this.state(agent, pb.NodeState.Connection.CONNECTION_HEARTBEAT);
      else if (m.state) {
        this.backendState(agent, m.state);
        this.state(agent, pb.NodeState.Connection.CONNECTION_HEARTBEAT);
      }
    });
    const closed = () => {
      if (!agent || agent.closed) return;
      agent.closed = true;
      this.agents.delete(agent);
      this.o.metrics.agents.set(this.agents.size);
      this.state(agent, pb.NodeState.Connection.CONNECTION_DISCONNECTED);
      void this.o.applied?.closed(agent.node, agent.stream);
      this.o.log.info({ node: agent.node }, 'agent disconnected');
    };
    call.on('end', () => { closed(); call.end(); });
    call.on('error', (err: Error) => {
      this.o.log.info({ node: agent?.node, err: err.message }, 'agent stream error');
      closed();
    });
    call.on('cancelled', closed);
  }

  private hello(call: RawConnectCall, h: irqtrace.v1.IHello | undefined): Agent | undefined {
    const problem = helloProblem(h);
    if (problem || !h?.node || !h.bootId) {
      const reason = problem ?? 'bad hello';
      this.o.metrics.refused.inc();
      this.o.log.warn({ reason, peer: call.getPeer() }, 'refused an agent');
      call.write(pb.IngestMessage.create({ refusal: { reason } }));
      call.end();
      return undefined;
    }
    const agent: Agent = {
      node: h.node,
      bootId: h.bootId,
      kernelRelease: h.kernelRelease ?? '',
      call,
      stream: `${this.o.name}/${this.lastVersion}/${++this.streams}`,
      traces: [],
      configKey: '',
      sent: new Map(),
      applied: 0n,
      failure: undefined,
      running: undefined,
      backend: null,
      pending: 0,
      chain: Promise.resolve(),
      closed: false,
    };
    this.agents.add(agent);
    this.o.metrics.agents.set(this.agents.size);
    this.o.log.info({ node: agent.node, bootId: agent.bootId, lastAckedSeq: toBigInt(h.lastAckedSeq).toString() }, 'agent connected');
    // Connected, nothing applied on this stream yet: what runs there is unknown until it reports
    // (nothing of an earlier stream's entry is kept).
    void this.o.applied?.put({ node: agent.node, bootId: agent.bootId, ingest: this.o.name, stream: agent.stream, connected: true, since: Date.now(), traces: undefined, failure: undefined });
    this.pushConfig(agent, true);
    this.state(agent, pb.NodeState.Connection.CONNECTION_CONNECTED);
    return agent;
  }

  private pushConfig(agent: Agent, always = false): void {
    const traces = this.o.configs.tracesFor(agent.node);
    const key = Buffer.from(pb.NodeConfig.encode({ traces }).finish()).toString('base64');
    if (!always && key === agent.configKey) return;
    agent.configKey = key;
    agent.traces = traces.map((t) => t.name ?? '');
    const version = ++this.lastVersion;
    agent.sent.set(version, agent.traces);
    for (const old of agent.sent.keys()) if (agent.sent.size > MAX_SENT_CONFIGS) agent.sent.delete(old);
    agent.call.write(pb.IngestMessage.create({ config: { version: toLong(version), traces } }));
  }

  /**
   * The agent's backend state; a config version sent on this stream that it now says it applied
   * is recorded, and so is why its kernel side failed (a failed unload keeps the version it still
   * runs, and holds a deleted trace with the node and the error named), or that it no longer does.
   * PHASE_IDLE says nothing of the kernel side runs (none asked for, or the agent stopped it all on
   * its way out): no trace then, whatever the version.
   */
  private backendState(agent: Agent, state: irqtrace.v1.IBackendState): void {
    agent.backend = state;
    const failure = state.phase === pb.BackendState.Phase.PHASE_FAILED ? state.reason || 'failed, no reason given' : undefined;
    const version = toBigInt(state.configVersion);
    const sent = agent.sent.get(version);
    const newVersion = sent !== undefined && version > agent.applied;
    if (newVersion) agent.applied = version;
    const traces = state.phase === pb.BackendState.Phase.PHASE_IDLE ? [] : newVersion ? sent : undefined;
    const changed = failure !== agent.failure || (traces !== undefined && traces.join('\n') !== agent.running?.join('\n'));
    if (!changed) return;
    agent.failure = failure;
    if (traces) agent.running = traces;
    void this.o.applied?.put({ node: agent.node, bootId: agent.bootId, ingest: this.o.name, stream: agent.stream, connected: true, failure, ...(traces ? { traces } : {}) });
  }

  private batch(agent: Agent, batch: ScannedBatch): void {
    const max = this.o.maxPending ?? 32;
    // Backpressure, not a cut: with maxPending batches waiting for JetStream, the stream is not read
    // (HTTP/2 flow control then holds the agent) until one is published. Cutting the stream off made
    // the agent re-send its whole backlog at once, over the bound again: a slow path to NATS (an
    // ingest on an emulated node) published nothing for minutes, each reconnect starting over.
    if (++agent.pending >= max && !agent.call.isPaused()) {
      agent.call.pause();
      this.o.metrics.paused.inc();
    }
    const received = BigInt(Date.now()) * 1_000_000n;
    const state = batchState(batch.state);
    if (state) this.backendState(agent, state);
    agent.chain = agent.chain.then(async () => {
      if (agent.closed) return;
      const started = process.hrtime.bigint();
      const publications = splitBatch(agent.node, agent.bootId, batch, agent.traces, this.o.pods, received);
      try {
        await Promise.all(publications.map((p) => this.o.publisher.publish(p.subject, p.data, p.msgID)));
      } catch (err) {
        this.o.metrics.publishFailures.inc();
        this.o.log.warn({ node: agent.node, err: String(err) }, 'publishing failed; ending the stream (the agent re-sends)');
        endWithStatus(agent.call, grpc.status.UNAVAILABLE, `event stream unavailable: ${String(err)}`);
        agent.closed = true;
        return;
      } finally {
        agent.pending--;
        if (agent.pending < max && agent.call.isPaused()) agent.call.resume();
      }
      this.o.metrics.publishSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      this.o.metrics.batches.inc();
      this.o.metrics.events.inc(publications.reduce((n, p) => n + p.events, 0));
      agent.call.write(pb.IngestMessage.create({ ack: { upToSeq: toLong(batch.seq) } }));
      if (state) this.state(agent, pb.NodeState.Connection.CONNECTION_HEARTBEAT);
    });
  }

  /** The node's connection and backend state, to each of its traces' state subject (best effort, no ack). */
  private state(agent: Agent, connection: irqtrace.v1.NodeState.Connection): void {
    const unixNs = toLong(BigInt(Date.now()) * 1_000_000n);
    for (const trace of agent.traces) {
      const data = pb.NodeState.encode({ node: agent.node, bootId: agent.bootId, trace, connection, backend: agent.backend, unixNs, ingest: this.o.name, kernelRelease: agent.kernelRelease }).finish();
      this.o.publisher.publish(subject(trace, agent.node, 'state'), data).catch((err: unknown) => {
        this.o.metrics.publishFailures.inc();
        this.o.log.debug({ node: agent.node, err: String(err) }, 'state not published');
      });
    }
  }
}
