// What each node's agent has applied, in a JetStream KV bucket: the ingest
// that holds the node's stream writes, whenever the agent reports
// (BackendState.config_version) a config it was sent, the traces of that
// config; and that the agent went away when its stream closes. The
// controller reads the bucket to hold a deleted trace's finalizer until every
// node that ran it has applied a config without it (or its agent is gone).
// A config version names one config on one stream: the ingest numbers them
// across all its streams from its start time, so a version an agent reports
// from an earlier stream is never taken for one of this stream.
import type { NatsConnection, QueuedIterator } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import type { KV, KvEntry, KvWatchEntry } from '@nats-io/kv';
import type { Logger } from 'pino';
import { encodeToken } from './subjects.js';
import type { NatsAuth } from './publisher.js';

export const APPLIED_BUCKET = 'IRQTRACE_AGENTS';

/** One node's entry. */
export interface AppliedConfig {
  node: string;
  bootId: string;
  /** The ingest replica and stream that wrote it (a later stream's entry is not overwritten by an earlier one's end). */
  ingest: string;
  stream: string;
  connected: boolean;
  /** The traces of the last config the agent applied on this stream; undefined until it reports one. */
  traces?: string[];
  /** Unix ms of the write. */
  at: number;
}

/** KV keys allow [-/_=.A-Za-z0-9]: the subject token with '%' as '='. */
const keyOf = (node: string): string => encodeToken(node).replaceAll('%', '=');

const openBucket = (nc: NatsConnection): Promise<KV> => new Kvm(nc).create(APPLIED_BUCKET, { history: 1 });

/** The ingest's side: one entry per node, written as its stream starts, applies configs and ends. */
export class AppliedConfigWriter {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  private bucket(): Promise<KV> {
    this.kv ??= openBucket(this.nc).catch((err: unknown) => {
      this.kv = undefined;
      throw err;
    });
    return this.kv;
  }

  /** The agent's stream opened, or it applied a config (traces given). Best effort: logged, never thrown. */
  async put(entry: Omit<AppliedConfig, 'at'>): Promise<void> {
    try {
      await (await this.bucket()).put(keyOf(entry.node), JSON.stringify({ ...entry, at: Date.now() }));
    } catch (err) {
      this.log.warn({ node: entry.node, err: String(err) }, 'applied config not recorded');
    }
  }

  /** The stream ended: the node's agent is gone, unless a later stream (any ingest) wrote since. */
  async closed(node: string, stream: string): Promise<void> {
    try {
      const kv = await this.bucket();
      const current = await kv.get(keyOf(node));
      if (!current || current.operation !== 'PUT') return;
      const entry = current.json<AppliedConfig>();
      if (entry.stream !== stream) return;
      // Compare-and-set: a write from the agent's next stream in between wins.
      await kv.update(keyOf(node), JSON.stringify({ ...entry, connected: false, at: Date.now() }), current.revision);
    } catch (err) {
      this.log.debug({ node, err: String(err) }, 'end of stream not recorded (a later stream wrote first, or NATS is away)');
    }
  }
}

/** The controller's side: every node's entry, kept current by a watch of the bucket. */
export class AppliedConfigReader {
  /** By KV key: the entry and the revision it came with (a replayed older one never replaces a newer one). */
  private readonly entries = new Map<string, { entry: AppliedConfig; revision: number }>();
  private watching: QueuedIterator<KvWatchEntry> | undefined;
  private loop: Promise<void> | undefined;
  private readonly listeners: (() => void)[] = [];
  private owned = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  /** A reader on a connection of its own (closed by stop), started. */
  static async connect(servers: string | string[], log: Logger, auth: NatsAuth = {}): Promise<AppliedConfigReader> {
    const nc = await connect({ servers, name: 'irqtrace-controller', maxReconnectAttempts: -1, reconnectTimeWait: 1000, ...auth });
    const reader = new AppliedConfigReader(nc, log);
    reader.owned = true;
    try {
      await reader.start();
    } catch (err) {
      await nc.close();
      throw err;
    }
    return reader;
  }

  /** Resolves once the entries present at start are read; changes follow from the watch. */
  async start(): Promise<void> {
    const kv = await openBucket(this.nc);
    // Watch first, read second: nothing written in between is missed.
    const watch = await kv.watch();
    this.watching = watch;
    this.loop = (async () => {
      for await (const e of watch) this.take(e);
    })().catch((err: unknown) => { this.log.warn({ err: String(err) }, 'the applied-config watch ended'); });
    for await (const key of await kv.keys()) {
      const e = await kv.get(key);
      if (e) this.take(e);
    }
  }

  private take(e: KvEntry): void {
    const known = this.entries.get(e.key);
    if (known && known.revision >= e.revision) return;
    if (e.operation === 'PUT') this.entries.set(e.key, { entry: e.json<AppliedConfig>(), revision: e.revision });
    else this.entries.delete(e.key);
    for (const l of this.listeners) l();
  }

  async stop(): Promise<void> {
    this.watching?.stop();
    await this.loop;
    if (this.owned) await this.nc.close();
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  get(node: string): AppliedConfig | undefined {
    return this.entries.get(keyOf(node))?.entry;
  }

  /**
   * The nodes whose agent is connected and may still run the trace: those of candidates (the
   * nodes it targets) and any other that applied it, whose last applied config has it or who
   * have not reported one yet.
   */
  stillRunning(trace: string, candidates: Iterable<string>): string[] {
    const nodes = new Set(candidates);
    for (const { entry } of this.entries.values()) if (entry.traces?.includes(trace)) nodes.add(entry.node);
    return [...nodes].filter((node) => {
      const e = this.get(node);
      return e?.connected === true && (e.traces === undefined || e.traces.includes(trace));
    }).sort();
  }
}
