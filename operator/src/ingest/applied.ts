// What each node's agent has applied, in a JetStream KV bucket: the ingest
// that holds the node's stream writes, whenever the agent reports
// (BackendState.config_version) a config it was sent, the traces of that
// config; and that the agent went away when its stream closes. The
// controller reads the bucket to hold a deleted trace's finalizer until every
// node that ran it has applied a config without it: an agent that went away is
// not one that unloaded (a module outlives its agent), so its node holds the
// trace until an agent on it reports, or the controller's timeout.
// A config version names one config on one stream: the ingest numbers them
// across all its streams from its start time, so a version an agent reports
// from an earlier stream is never taken for one of this stream.
// An ingest re-writes its connected streams' entries every refreshMs (written
// in the entry): a "connected" entry older than STALE_REFRESHES of them is of
// an ingest that is gone (killed, or cut off from NATS), and its agent may be
// gone with it; a write that failed is made again then too.
import type { NatsConnection, QueuedIterator } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import type { KV, KvEntry, KvWatchEntry } from '@nats-io/kv';
import type { Logger } from 'pino';
import { kvKeyToken } from './subjects.js';
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
  /** Unix ms the stream started: an entry of an earlier stream never replaces a later one's. */
  since?: number;
  /** How often the ingest re-writes the entry while the stream is open. */
  refreshMs?: number;
  /** Why the agent's kernel side cannot do what it was last sent (e.g. a failed unload), while it cannot. */
  failure?: string;
}

/** A node that may still run a deleted trace, and why the controller cannot tell it does not. */
export interface PendingNode {
  node: string;
  /**
   * connected: its agent has not reported a config without the trace yet; gone: its agent went
   * away (or its ingest did) while running it, and a kernel side outlives its agent (a module
   * stays loaded); failed: its agent says why it cannot stop (failure).
   */
  state: 'connected' | 'gone' | 'failed';
  /** What the agent last said failed (kept when it is gone since). */
  failure?: string;
}

/** How often an ingest re-writes its connected streams' entries, by default. */
export const APPLIED_REFRESH_MS = 10_000;
/** A connected entry not re-written for this many refreshes is of an ingest that is gone. */
export const STALE_REFRESHES = 3;

/** When the entry turns stale, unless re-written (unix ms): its writer missed STALE_REFRESHES refreshes. */
function staleAt(entry: AppliedConfig): number {
  return entry.at + STALE_REFRESHES * (entry.refreshMs ?? APPLIED_REFRESH_MS) + 1;
}

/** The entry's agent is connected to an ingest that is alive (it still re-writes the entry). */
export function isLive(entry: AppliedConfig, now = Date.now()): boolean {
  return entry.connected && now < staleAt(entry);
}

const openBucket = (nc: NatsConnection): Promise<KV> => new Kvm(nc).create(APPLIED_BUCKET, { history: 1 });

/** The ingest's side: one entry per node, written as its stream starts, applies configs and ends, and re-written while it is open. */
export class AppliedConfigWriter {
  private kv: Promise<KV> | undefined;
  /** The entries of this ingest's open streams, by node: re-written every refreshMs. */
  private readonly open = new Map<string, Omit<AppliedConfig, 'at'>>();
  private readonly timer: NodeJS.Timeout;
  readonly refreshMs: number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    options: { refreshMs?: number } = {},
  ) {
    this.refreshMs = options.refreshMs ?? APPLIED_REFRESH_MS;
    this.timer = setInterval(() => { void this.refreshAll(); }, this.refreshMs);
    this.timer.unref();
  }

  private bucket(): Promise<KV> {
    this.kv ??= openBucket(this.nc).catch((err: unknown) => {
      this.kv = undefined;
      throw err;
    });
    return this.kv;
  }

  /**
   * The agent's stream opened (since given), or it applied a config (traces given): stored now,
   * and again at every refresh while the stream is open (so a failed write is made again). False
   * when this write failed (logged, never thrown).
   */
  async put(entry: Omit<AppliedConfig, 'at' | 'refreshMs'>): Promise<boolean> {
    const open = { ...this.open.get(entry.node), ...entry, refreshMs: this.refreshMs };
    if (open.stream !== this.open.get(entry.node)?.stream && entry.since === undefined) return false;
    this.open.set(entry.node, open);
    return this.write(open);
  }

  /** Writes the entry unless a later stream of the node (any ingest) wrote since; compare-and-set. */
  private async write(entry: Omit<AppliedConfig, 'at'>): Promise<boolean> {
    try {
      const kv = await this.bucket();
      const current = await kv.get(kvKeyToken(entry.node));
      const value = JSON.stringify({ ...entry, at: Date.now() });
      if (!current || current.operation !== 'PUT') {
        await kv.create(kvKeyToken(entry.node), value).catch(async () => kv.put(kvKeyToken(entry.node), value));
        return true;
      }
      const stored = current.json<AppliedConfig>();
      if (stored.stream !== entry.stream && (stored.since ?? 0) > (entry.since ?? 0)) {
        // The agent is on a later stream now: this one's end is near; nothing of it is written again.
        this.open.delete(entry.node);
        return false;
      }
      await kv.update(kvKeyToken(entry.node), value, current.revision);
      return true;
    } catch (err) {
      this.log.warn({ node: entry.node, err: String(err) }, 'applied config not recorded; the next refresh writes it again');
      return false;
    }
  }

  private async refreshAll(): Promise<void> {
    for (const entry of [...this.open.values()]) await this.write(entry);
  }

  /** The stream ended: the node's agent is gone, unless a later stream (any ingest) wrote since. */
  async closed(node: string, stream: string): Promise<void> {
    if (this.open.get(node)?.stream === stream) this.open.delete(node);
    try {
      const kv = await this.bucket();
      const current = await kv.get(kvKeyToken(node));
      if (!current || current.operation !== 'PUT') return;
      const entry = current.json<AppliedConfig>();
      if (entry.stream !== stream) return;
      // Compare-and-set: a write from the agent's next stream in between wins.
      await kv.update(kvKeyToken(node), JSON.stringify({ ...entry, connected: false, at: Date.now() }), current.revision);
    } catch (err) {
      this.log.debug({ node, err: String(err) }, 'end of stream not recorded (a later stream wrote first, or NATS is away)');
    }
  }

  /** No more refreshes (the ingest stops; its open entries then go stale unless closed). */
  stop(): void {
    clearInterval(this.timer);
  }
}

/** The controller's side: every node's entry, kept current by a watch of the bucket. */
export class AppliedConfigReader {
  /** By KV key: the entry and the revision it came with (a replayed older one never replaces a newer one). */
  private readonly entries = new Map<string, { entry: AppliedConfig; revision: number }>();
  private watching: QueuedIterator<KvWatchEntry> | undefined;
  private loop: Promise<void> | undefined;
  private readonly listeners: (() => void)[] = [];
  /** Per key: when its live entry turns stale, the listeners hear of it (nothing else would change). */
  private readonly staleTimers = new Map<string, NodeJS.Timeout>();
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
    clearTimeout(this.staleTimers.get(e.key));
    this.staleTimers.delete(e.key);
    if (e.operation === 'PUT') {
      const entry = e.json<AppliedConfig>();
      this.entries.set(e.key, { entry, revision: e.revision });
      if (isLive(entry)) {
        const timer = setTimeout(() => {
          this.staleTimers.delete(e.key);
          this.log.warn({ node: entry.node, ingest: entry.ingest }, 'the ingest holding this node\'s stream stopped writing its entry: taken as gone');
          this.changed();
        }, Math.max(0, staleAt(entry) - Date.now()));
        timer.unref();
        this.staleTimers.set(e.key, timer);
      }
    } else this.entries.delete(e.key);
    this.changed();
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  async stop(): Promise<void> {
    for (const t of this.staleTimers.values()) clearTimeout(t);
    this.staleTimers.clear();
    this.watching?.stop();
    await this.loop;
    if (this.owned) await this.nc.close();
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  get(node: string): AppliedConfig | undefined {
    return this.entries.get(kvKeyToken(node))?.entry;
  }

  /**
   * The nodes that may still run the trace: those of candidates (the nodes it targets) and any
   * other that applied it, still in the cluster (inCluster), whose agent's last applied config
   * has it or who have not reported one yet. Gone is not unloaded: an agent killed or cut off
   * while running it left its kernel side as it was, until an agent on the node says otherwise.
   */
  stillRunning(trace: string, candidates: Iterable<string>, inCluster: (node: string) => boolean, now = Date.now()): PendingNode[] {
    const nodes = new Set(candidates);
    for (const { entry } of this.entries.values()) if (entry.traces?.includes(trace)) nodes.add(entry.node);
    const pending: PendingNode[] = [];
    for (const node of [...nodes].sort()) {
      const e = this.get(node);
      if (!e || !inCluster(node) || (e.traces !== undefined && !e.traces.includes(trace))) continue;
      const state = !isLive(e, now) ? 'gone' : e.failure !== undefined ? 'failed' : 'connected';
      pending.push({ node, state, ...(e.failure !== undefined ? { failure: e.failure } : {}) });
    }
    return pending;
  }
}
