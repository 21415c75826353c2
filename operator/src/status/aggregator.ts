// The status aggregator (runs on the leader): a durable JetStream consumer
// over the event stream feeds per trace, per node summaries (aggregate.ts),
// which become each IrqTrace's status, patched at most once per
// statusIntervalMs per trace. Restart-safe and exact: the node records are
// checkpointed in a JetStream KV bucket, then the stream position they reach
// (the cursor), then the consumer is acked (AckAll up to the last message
// applied). On start the consumer is made again at the cursor: messages come in
// stream order, and each record skips what it had applied (its appliedThrough).
// Resuming the old consumer would not do: messages delivered to a killed
// aggregator come again only after ack_wait, behind newer ones, and a record's
// high-water mark would then skip them as already applied.
import * as k8s from '@kubernetes/client-node';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { irqtrace, toBigInt } from '@irqtrace/proto';
import type { Logger } from 'pino';
import { Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { applyTraceStatus } from '../kube.js';
import type { TraceObject } from '../kube.js';
import { RoleInformers } from '../informers.js';
import type { SharedInformers } from '../informers.js';
import { STREAM, SUBJECT_ROOT, encodeToken, kvKeyToken, parseSubject } from '../ingest/subjects.js';
import { TraceAggregate } from './aggregate.js';
import type { NatsAuth } from '../ingest/publisher.js';
import type { NodeRecord } from './aggregate.js';

const pb = irqtrace.v1;
export const CONSUMER = 'irqtrace-status';
export const BUCKET = 'IRQTRACE_STATUS';
const FIELD_MANAGER = 'irqtrace-status';

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

const recordKey = (trace: string, node: string): string => `${kvKeyToken(trace)}.${kvKeyToken(node)}`;
/** The stream sequence every record is checkpointed through (record keys always have a dot). */
const CURSOR_KEY = 'cursor';
/** How long, and how many, deleted traces are remembered (to tell their late batches from a new trace's). */
const FORGOTTEN_KEEP_MS = 10 * 60_000;
const FORGOTTEN_MAX = 1024;


export class StatusAggregator {
  private nc: NatsConnection | undefined;
  private kv: KV | undefined;
  private messages: ConsumerMessages | undefined;
  private readonly traces = new Map<string, TraceAggregate>();
  private readonly informers: RoleInformers;
  private readonly custom: k8s.CustomObjectsApi;
  /** The last message applied and not yet acked. */
  private lastMsg: JsMsg | undefined;
  /** The cursor last stored: every record in the bucket holds what came up to it. */
  private storedCursor = 0;
  /** The checkpoint and status intervals. */
  private readonly timers: NodeJS.Timeout[] = [];
  /** The pending re-subscription, if any. */
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly statusDue = new Set<string>();
  private flushing: Promise<void> = Promise.resolve();
  private consuming: Promise<void> | undefined;
  private stopped = false;
  /** Unix ms at which each deleted trace was forgotten: what its agents sent before then was the old trace's. */
  private readonly forgotten = new Map<string, number>();
  /** Messages applied, and the stream sequence of the last one (for lag and tests). */
  applied = 0;
  /** Times deliveries were lost on the way and the consumer started over at the checkpoint. */
  deliveryGaps = 0;
  /** Reconnects to NATS, each followed by consuming again from the checkpoint. */
  reconnects = 0;
  lastStreamSeq = 0;

  constructor(private readonly o: AggregatorOptions) {
    this.custom = o.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    // A new or changed trace (e.g. the controller's nodesTargeted) gets its status written.
    this.informers = new RoleInformers(o.informers, o.kubeConfig, o.log, {
      traces: { change: (t: TraceObject) => { this.statusDue.add(t.metadata.name); }, delete: (t: TraceObject) => { void this.forget(t.metadata.name); } },
    });
    if (o.registry) this.registerMetrics(o.registry);
  }

  private registerMetrics(registry: Registry): void {
    // A replica that leads again makes a new aggregator: its metrics replace the old one's.
    for (const name of ['irqtrace_violations', 'irqtrace_max_duration_seconds', 'irqtrace_status_lag_messages']) registry.removeSingleMetric(name);
    const traces = this.traces;
    new Gauge({
      name: 'irqtrace_violations',
      help: 'Sections over the threshold, by trace and node (from the event stream)',
      labelNames: ['trace', 'node'],
      registers: [registry],
      collect() {
        this.reset();
        for (const a of traces.values()) for (const [node, r] of a.nodes) this.set({ trace: a.trace, node }, r.violations);
      },
    });
    new Gauge({
      name: 'irqtrace_max_duration_seconds',
      help: 'The longest section over the threshold, by trace and node',
      labelNames: ['trace', 'node'],
      registers: [registry],
      collect() {
        this.reset();
        for (const a of traces.values()) for (const [node, r] of a.nodes) this.set({ trace: a.trace, node }, r.maxDurationNs / 1e9);
      },
    });
    const lag = async (): Promise<number> => {
      if (!this.nc || this.nc.isClosed()) return 0;
      const info = await (await jetstreamManager(this.nc)).streams.info(STREAM);
      return Math.max(0, info.state.last_seq - this.lastStreamSeq);
    };
    new Gauge({
      name: 'irqtrace_status_lag_messages',
      help: 'Messages in the event stream the status aggregator has not applied yet',
      registers: [registry],
      async collect() {
        this.set(await lag().catch(() => 0));
      },
    });
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
    this.stopped = false;
    await this.informers.start();
    signal?.throwIfAborted();
    const nc = await connect({ servers: this.o.servers, name: 'irqtrace-status', maxReconnectAttempts: -1, reconnectTimeWait: 1000, ...this.o.auth });
    this.nc = nc;
    void this.watchConnection(nc);
    signal?.throwIfAborted();
    const jsm = await jetstreamManager(nc);
    // Made by the ingest; here too, so the aggregator can start first.
    try {
      await jsm.streams.info(STREAM);
    } catch {
      await jsm.streams.add({ name: STREAM, subjects: [`${SUBJECT_ROOT}.>`] });
    }
    this.kv = await new Kvm(nc).create(BUCKET, { history: 1 });
    const cursor = await this.restore();
    signal?.throwIfAborted();
    // Traces deleted while no aggregator ran.
    for (const trace of [...this.traces.keys()]) if (!this.informers.traces.get(trace)) await this.forget(trace);
    this.storedCursor = cursor;
    signal?.throwIfAborted();
    await this.subscribe();
    this.timers.push(setInterval(() => { void this.checkpoint(); }, this.o.checkpointMs ?? 1000));
    this.timers.push(setInterval(() => { void this.writeStatuses(); }, this.o.statusIntervalMs ?? 2000));
  }

  /**
   * (Re)makes the durable consumer at the stored cursor and consumes from it. Records applied
   * beyond the cursor skip what they hold (appliedThrough), so starting over there loses nothing.
   */
  private async subscribe(): Promise<void> {
    const nc = this.nc;
    if (!nc) return;
    const jsm = await jetstreamManager(nc);
    const cursor = this.storedCursor;
    await jsm.consumers.delete(STREAM, CONSUMER).catch(() => false);
    await jsm.consumers.add(STREAM, {
      durable_name: CONSUMER,
      ack_policy: AckPolicy.All,
      ...(cursor > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: cursor + 1 } : { deliver_policy: DeliverPolicy.All }),
      ack_wait: 60_000_000_000,
      max_ack_pending: 100_000,
    });
    const consumer = await jetstream(nc).consumers.get(STREAM, CONSUMER);
    const messages = await consumer.consume({ max_messages: 2000 });
    this.messages = messages;
    this.consuming = this.consume(messages).then(
      () => { this.consumerBroken(new Error('the consumer ended')); },
      (err: unknown) => { this.consumerBroken(err); },
    );
  }

  /**
   * After a reconnect, consume again from the checkpoint: what the server had sent on the lost
   * connection is gone, while JetStream counts it as delivered (and nats-server cuts a client that
   * reads too slowly, no fault needed). The consumer would go on after it, and the next ack
   * (AckAll) would take it along; without newer messages, it would wait out ack_wait.
   */
  private async watchConnection(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type !== 'reconnect' || this.stopped) continue;
      this.o.log.warn({}, 'reconnected to NATS: consuming again from the checkpoint (deliveries on the lost connection are gone)');
      this.reconnects++;
      // Ends the consume loop; consumerBroken() subscribes again at the stored cursor.
      void this.messages?.close().catch(() => undefined);
    }
  }

  /** The consumer's iterator failed (its consumer gone, the server away too long): start over after a pause. */
  private consumerBroken(err: unknown): void {
    if (this.stopped) return;
    this.o.log.warn({ err: String(err) }, 'the event stream consumer broke; subscribing again at the checkpoint');
    // One retry at a time, whatever broke it how often (a reconnect storm).
    const retry = (): void => {
      this.retryTimer = undefined;
      if (this.stopped) return;
      this.subscribe().catch((e: unknown) => {
        this.o.log.warn({ err: String(e) }, 'subscribing again failed; retrying');
        this.retryTimer ??= setTimeout(retry, 2000);
      });
    };
    this.retryTimer ??= setTimeout(retry, 1000);
  }

  /** Stops after a last checkpoint (a graceful handover). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.retryTimer);
    await this.messages?.close();
    await this.consuming;
    await this.checkpoint();
    await this.writeStatuses();
    await this.informers.stop();
    await this.nc?.drain();
  }

  /** Stops at once, losing whatever is not checkpointed: a crash, for tests of restart safety. */
  async crash(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.retryTimer);
    await this.informers.stop();
    await this.nc?.close();
  }

  /** Every node record of every trace, as last checkpointed; returns the cursor (0: from the start). */
  private async restore(): Promise<number> {
    const kv = this.kv;
    if (!kv) return 0;
    let n = 0;
    let cursor = 0;
    for await (const key of await kv.keys()) {
      const entry = await kv.get(key);
      if (!entry || entry.operation !== 'PUT') continue;
      if (key === CURSOR_KEY) {
        cursor = Number(entry.string());
        continue;
      }
      const { trace, node, record } = entry.json<{ trace: string; node: string; record: NodeRecord }>();
      this.aggregate(trace).nodes.set(node, record);
      this.statusDue.add(trace);
      n++;
    }
    this.o.log.info({ records: n, cursor }, 'restored the status checkpoint');
    return cursor;
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
    this.statusDue.delete(trace);
    this.flushing = this.flushing.then(() => this.purge(trace));
    return this.flushing;
  }

  private async purge(trace: string): Promise<void> {
    try {
      const kv = this.kv;
      if (kv) for await (const key of await kv.keys(`${kvKeyToken(trace)}.>`)) await kv.purge(key);
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

  private async consume(messages: ConsumerMessages): Promise<void> {
    let delivered: number | undefined;
    for await (const m of messages) {
      // Every delivery of the consumer, in order: one missing was sent to this connection and lost
      // on the way (nats-server cuts a client that reads too slowly, and the client reconnects
      // with its consumer going on after them). The next checkpoint's ack (AckAll) would take it
      // along and it would never come again: start over at the checkpoint, before applying more.
      const at = m.info.deliverySequence;
      if (delivered !== undefined && at !== delivered + 1) {
        this.deliveryGaps++;
        // Not awaited: close() settles when this loop has ended, which it does by the throw.
        void messages.close().catch(() => undefined);
        throw new Error(`deliveries ${delivered + 1}..${at - 1} of the consumer never arrived (stream sequence ${m.seq} came after ${this.lastStreamSeq})`);
      }
      delivered = at;
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
          this.statusDue.add(where.trace);
        } catch (err) {
          // A message no reader can decode is skipped (and acked with the rest), loudly.
          this.o.log.error({ subject: m.subject, seq: m.seq, err: String(err) }, 'undecodable message in the event stream; skipped');
        }
      }
      this.applied++;
      this.lastStreamSeq = m.seq;
      this.lastMsg = m;
    }
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

  /**
   * Writes every node record changed since it was last written, then the cursor, then acks up
   * to the last message applied. A node's mark is cleared only once its write succeeded and only
   * if it did not change meanwhile; the cursor moves only when every record it covers is stored.
   */
  private async writeCheckpoint(): Promise<void> {
    const kv = this.kv;
    const msg = this.lastMsg;
    if (!kv || !msg) return;
    const writes: { a: TraceAggregate; node: string; change: number; put: Promise<unknown> }[] = [];
    for (const a of this.traces.values()) {
      for (const [node, change] of a.dirty) {
        const record = a.nodes.get(node);
        if (record) writes.push({ a, node, change, put: kv.put(recordKey(a.trace, node), JSON.stringify({ trace: a.trace, node, record })) });
      }
    }
    const results = await Promise.allSettled(writes.map((w) => w.put));
    let failed: Error | undefined;
    results.forEach((r, i) => {
      const w = writes[i];
      if (!w) return;
      if (r.status === 'rejected') failed ??= r.reason instanceof Error ? r.reason : new Error(`node record not stored: ${JSON.stringify(r.reason)}`);
      else w.a.written(w.node, w.change);
    });
    if (failed) throw failed;
    await kv.put(CURSOR_KEY, String(msg.seq));
    this.storedCursor = msg.seq;
    msg.ack();
    if (this.lastMsg === msg) this.lastMsg = undefined;
  }

  private async writeStatuses(): Promise<void> {
    const due = [...this.statusDue];
    this.statusDue.clear();
    for (const name of due) {
      const t = this.informers.traces.get(name);
      if (!t || t.metadata.deletionTimestamp) continue;
      try {
        await this.writeStatus(t, this.aggregate(name));
      } catch (err) {
        this.statusDue.add(name);
        this.o.log.warn({ trace: name, err: String(err) }, 'status not written; retrying');
      }
    }
  }

  private async writeStatus(t: TraceObject, a: TraceAggregate): Promise<void> {
    const now = new Date();
    const s = a.status(now.getTime(), t.status?.nodesTargeted ?? 0, t.spec.target.all ? 'all' : 'irq_lines');
    const conditions = s.conditions.map((c) => {
      const previous = t.status?.conditions?.find((p) => p.type === c.type);
      return { ...c, lastTransitionTime: previous?.status === c.status ? previous.lastTransitionTime : now.toISOString(), observedGeneration: t.metadata.generation ?? 0 };
    });
    await applyTraceStatus(this.custom, t.metadata.name, FIELD_MANAGER, { ...s, conditions });
  }
}
