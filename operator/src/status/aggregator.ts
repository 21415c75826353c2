// The status aggregator (runs on the leader): a durable JetStream consumer over the event stream
// (event_consumer.ts) feeds per trace, per node summaries (aggregate.ts), which become each
// IrqTrace's status (status_writer.ts), patched at most once per statusIntervalMs per trace.
// Restart-safe and exact: the node records are checkpointed in a JetStream KV bucket, then the
// stream position they reach, the cursor (checkpoint_store.ts), then the consumer is acked
// (AckAll up to the last message applied). On start the consumer is made again at the cursor.
import * as k8s from '@kubernetes/client-node';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import type { JsMsg } from '@nats-io/jetstream';
import { irqtrace, toBigInt } from '@irqtrace/proto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { TraceObject } from '../kube.js';
import { RoleInformers } from '../informers.js';
import type { SharedInformers } from '../informers.js';
import { STREAM, SUBJECT_ROOT, encodeToken, parseSubject } from '../ingest/subjects.js';
import type { NatsAuth } from '../ingest/publisher.js';
import { TraceAggregate } from './aggregate.js';
import { CheckpointStore } from './checkpoint_store.js';
import { EventConsumer } from './event_consumer.js';
import { registerStatusMetrics } from './metrics.js';
import { StatusWriter } from './status_writer.js';

export { BUCKET } from './checkpoint_store.js';
export { CONSUMER } from './event_consumer.js';

const pb = irqtrace.v1;

export interface AggregatorOptions {
  servers: string | string[];
  kubeConfig: k8s.KubeConfig;
  log: Logger;
  /** At most one status patch per trace this often (default 2 s). */
  statusIntervalMs?: number;
  /** Checkpoint and ack this often (default 1 s). */
  checkpointMs?: number;
  /** Where its metrics go (violations and longest section per trace and node, lag). */
  registry?: Registry;
  auth?: NatsAuth;
  /** The process's informers (default: its own). */
  informers?: SharedInformers;
}

/** How long, and how many, deleted traces are remembered (to tell their late batches from a new trace's). */
const FORGOTTEN_KEEP_MS = 10 * 60_000;
const FORGOTTEN_MAX = 1024;

export class StatusAggregator {
  private nc: NatsConnection | undefined;
  private store: CheckpointStore | undefined;
  private consumer: EventConsumer | undefined;
  private readonly traces = new Map<string, TraceAggregate>();
  private readonly informers: RoleInformers;
  private readonly statuses: StatusWriter;
  /** The last message applied and not yet acked. */
  private lastMsg: JsMsg | undefined;
  /** The cursor last stored: every record in the bucket holds what came up to it. */
  private storedCursor = 0;
  /** The checkpoint and status intervals. */
  private readonly timers: NodeJS.Timeout[] = [];
  private flushing: Promise<void> = Promise.resolve();
  /** Unix ms at which each deleted trace was forgotten: what its agents sent before then was the old trace's. */
  private readonly forgotten = new Map<string, number>();
  /** Messages applied, and the stream sequence of the last one (for lag and tests). */
  applied = 0;
  lastStreamSeq = 0;

  constructor(private readonly o: AggregatorOptions) {
    // A new or changed trace (e.g. the controller's nodesTargeted) gets its status written.
    this.informers = new RoleInformers(o.informers, o.kubeConfig, o.log, {
      traces: { change: (t: TraceObject) => { this.statuses.markDue(t.metadata.name); }, delete: (t: TraceObject) => { void this.forget(t.metadata.name); } },
    });
    this.statuses = new StatusWriter({
      custom: o.kubeConfig.makeApiClient(k8s.CustomObjectsApi),
      log: o.log,
      trace: (name) => this.informers.traces.get(name),
      aggregate: (name) => this.aggregate(name),
    });
    if (o.registry) registerStatusMetrics(o.registry, this.traces, () => this.lag());
  }

  /** Times deliveries were lost on the way and the consumer started over at the checkpoint. */
  get deliveryGaps(): number {
    return this.consumer?.deliveryGaps ?? 0;
  }

  /** Reconnects to NATS, each followed by consuming again from the checkpoint. */
  get reconnects(): number {
    return this.consumer?.reconnects ?? 0;
  }

  private async lag(): Promise<number> {
    if (!this.nc || this.nc.isClosed()) return 0;
    const info = await (await jetstreamManager(this.nc)).streams.info(STREAM);
    return Math.max(0, info.state.last_seq - this.lastStreamSeq);
  }

  /**
   * Restores the checkpoint and starts consuming. An aborted signal (leadership lost meanwhile)
   * stops it between steps, before it touches the consumer or any status: it rejects, closed.
   */
  async start(signal?: AbortSignal): Promise<void> {
    try {
      await this.starting(signal);
    } catch (err) {
      await this.crash().catch(() => undefined);
      throw err;
    }
  }

  private async starting(signal: AbortSignal | undefined): Promise<void> {
    await this.informers.start();
    signal?.throwIfAborted();
    const nc = await connect({ servers: this.o.servers, name: 'irqtrace-status', maxReconnectAttempts: -1, reconnectTimeWait: 1000, ...this.o.auth });
    this.nc = nc;
    signal?.throwIfAborted();
    const jsm = await jetstreamManager(nc);
    // Made by the ingest; here too, so the aggregator can start first.
    try {
      await jsm.streams.info(STREAM);
    } catch {
      await jsm.streams.add({ name: STREAM, subjects: [`${SUBJECT_ROOT}.>`] });
    }
    this.store = await CheckpointStore.open(nc);
    const { records, cursor } = await this.store.restore();
    for (const { trace, node, record } of records) {
      this.aggregate(trace).nodes.set(node, record);
      this.statuses.markDue(trace);
    }
    this.o.log.info({ records: records.length, cursor }, 'restored the status checkpoint');
    signal?.throwIfAborted();
    // Traces deleted while no aggregator ran.
    for (const trace of [...this.traces.keys()]) if (!this.informers.traces.get(trace)) await this.forget(trace);
    this.storedCursor = cursor;
    signal?.throwIfAborted();
    this.consumer = new EventConsumer(nc, { log: this.o.log, cursor: () => this.storedCursor, onMessage: (m) => { this.apply(m); } });
    await this.consumer.start();
    this.timers.push(setInterval(() => { void this.checkpoint(); }, this.o.checkpointMs ?? 1000));
    this.timers.push(setInterval(() => { void this.statuses.writeDue(); }, this.o.statusIntervalMs ?? 2000));
  }

  /** Stops after a last checkpoint (a graceful handover). */
  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    await this.consumer?.stop();
    await this.checkpoint();
    await this.statuses.writeDue();
    await this.informers.stop();
    await this.nc?.drain();
  }

  /** Stops at once, losing whatever is not checkpointed: a crash, for tests of restart safety. */
  async crash(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.consumer?.halt();
    await this.informers.stop();
    await this.nc?.close();
  }

  private aggregate(trace: string): TraceAggregate {
    let a = this.traces.get(trace);
    if (!a) this.traces.set(trace, (a = new TraceAggregate(trace)));
    return a;
  }

  /**
   * A deleted trace: its counts, its checkpoint and its messages in the stream go, so that a new
   * trace of the same name starts from nothing. Batches still in flight (sent before the agents
   * heard of the deletion) are told apart by the time the ingest received them. The purge runs
   * after the checkpoint under way, if any: one that had taken the trace's records would
   * otherwise write them back after it.
   */
  private forget(trace: string): Promise<void> {
    const now = Date.now();
    // Bounded: what was in flight at a deletion reached the stream long before FORGOTTEN_KEEP_MS.
    for (const [name, at] of this.forgotten) if (now - at > FORGOTTEN_KEEP_MS || this.forgotten.size >= FORGOTTEN_MAX) this.forgotten.delete(name);
    this.forgotten.delete(trace);
    this.forgotten.set(trace, now);
    this.traces.delete(trace);
    this.statuses.forget(trace);
    this.flushing = this.flushing.then(() => this.purge(trace));
    return this.flushing;
  }

  private async purge(trace: string): Promise<void> {
    try {
      await this.store?.purge(trace);
      if (this.nc && !this.nc.isClosed()) await (await jetstreamManager(this.nc)).streams.purge(STREAM, { filter: `${SUBJECT_ROOT}.${encodeToken(trace)}.>` });
      this.o.log.info({ trace }, 'trace deleted: its counts, checkpoint and events dropped');
    } catch (err) {
      this.o.log.warn({ trace, err: String(err) }, 'dropping a deleted trace\'s checkpoint or events failed');
    }
  }

  private isForgotten(trace: string, receivedUnixNs: bigint): boolean {
    const at = this.forgotten.get(trace);
    return at !== undefined && receivedUnixNs <= BigInt(at) * 1_000_000n;
  }

  /** One message of the stream, in order, into its trace's aggregate. */
  private apply(m: JsMsg): void {
    const where = parseSubject(m.subject);
    if (where) {
      try {
        if (where.kind === 'events') {
          const b = pb.NodeBatch.decode(m.data);
          if (!this.isForgotten(where.trace, toBigInt(b.receivedUnixNs))) this.aggregate(where.trace).applyBatch(m.seq, b);
        } else if (where.kind === 'state') {
          const st = pb.NodeState.decode(m.data);
          if (!this.isForgotten(where.trace, toBigInt(st.unixNs))) this.aggregate(where.trace).applyState(m.seq, st);
        }
        this.statuses.markDue(where.trace);
      } catch (err) {
        // A message no reader can decode is skipped (and acked with the rest), loudly.
        this.o.log.error({ subject: m.subject, seq: m.seq, err: String(err) }, 'undecodable message in the event stream; skipped');
      }
    }
    this.applied++;
    this.lastStreamSeq = m.seq;
    this.lastMsg = m;
  }

  /**
   * Queues a checkpoint after the one under way: it never rejects (a failed one is logged and
   * the next one retries what it could not write), so neither the timer nor stop() can die of it.
   */
  private checkpoint(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writeCheckpoint()).catch((err: unknown) => {
      // Not acked: the messages come again, and are applied once (appliedThrough).
      this.o.log.warn({ err: String(err) }, 'checkpoint failed; the next one retries');
    });
    return this.flushing;
  }

  /** The changed records and the cursor stored, then the ack up to the last message applied. */
  private async writeCheckpoint(): Promise<void> {
    const store = this.store;
    const msg = this.lastMsg;
    if (!store || !msg) return;
    await store.write(this.traces.values(), msg.seq);
    this.storedCursor = msg.seq;
    msg.ack();
    if (this.lastMsg === msg) this.lastMsg = undefined;
  }
}
