// Batches not yet acknowledged by the ingest, in seq order, kept in memory
// and in a spool directory (one file per batch, written atomically), so an
// ingest outage or an agent restart loses nothing until the spool's bound.
// Over the bound the oldest batches go, and their events are counted as a
// loss the next batch reports.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { irqtrace } from '@irqtrace/proto';

type EventBatch = irqtrace.v1.EventBatch;

export interface OutboxOptions {
  /** Spool directory; no spool (memory only) when undefined. */
  dir?: string;
  /** Bound of the unacked batches' encoded size. */
  maxBytes?: number;
}

interface Entry {
  seq: bigint;
  bytes: Uint8Array;
  events: number;
}

const STATE = 'state.json';

export class Outbox {
  private readonly entries: Entry[] = [];
  private bytes = 0;
  private lastSeq = 0n;
  private acked = 0n;
  /** Events dropped because the bound was reached, not yet reported. */
  private unreportedLoss = 0;
  /** Events dropped over the outbox's life. */
  droppedEvents = 0;
  readonly maxBytes: number;

  constructor(private readonly options: OutboxOptions = {}) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (options.dir) this.recover(options.dir);
  }

  /** Reloads what a previous run left: its last seq and its unacked batches. */
  private recover(dir: string): void {
    mkdirSync(dir, { recursive: true });
    try {
      const state = JSON.parse(readFileSync(join(dir, STATE), 'utf8')) as { lastSeq?: string; acked?: string };
      this.lastSeq = BigInt(state.lastSeq ?? '0');
      this.acked = BigInt(state.acked ?? '0');
    } catch {
      // No state yet (first run) or a torn one: the batch files still say what was sent.
    }
    const files = readdirSync(dir).filter((f) => /^\d+\.batch$/.test(f));
    const seqs = files.map((f) => BigInt(f.slice(0, -'.batch'.length))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const seq of seqs) {
      const path = join(dir, `${seq}.batch`);
      if (seq <= this.acked) {
        rmSync(path, { force: true });
        continue;
      }
      try {
        const bytes = readFileSync(path);
        const events = irqtrace.v1.EventBatch.decode(bytes).events.length;
        this.entries.push({ seq, bytes, events });
        this.bytes += bytes.length;
        if (seq > this.lastSeq) this.lastSeq = seq;
      } catch {
        // A batch cut short by a crash mid-write cannot be: writes are renamed into place.
        rmSync(path, { force: true });
      }
    }
  }

  private saveState(): void {
    const dir = this.options.dir;
    if (!dir) return;
    const tmp = join(dir, `${STATE}.tmp`);
    writeFileSync(tmp, JSON.stringify({ lastSeq: String(this.lastSeq), acked: String(this.acked) }));
    renameSync(tmp, join(dir, STATE));
  }

  /** The seq the next batch gets. */
  nextSeq(): bigint {
    return this.lastSeq + 1n;
  }

  /** Highest seq the ingest acknowledged. */
  get ackedSeq(): bigint {
    return this.acked;
  }

  get size(): number {
    return this.entries.length;
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  /** Events lost to the bound since the last call: for a Loss in the next batch. */
  takeLoss(): number {
    const n = this.unreportedLoss;
    this.unreportedLoss = 0;
    return n;
  }

  /** Stores a batch (its seq must be nextSeq()). */
  add(batch: EventBatch): void {
    this.addEncoded(BigInt(batch.seq.toString()), irqtrace.v1.EventBatch.encode(batch).finish(), batch.events.length);
  }

  /** Stores an encoded batch of events events (its seq must be nextSeq()). */
  addEncoded(seq: bigint, bytes: Uint8Array, events: number): void {
    if (seq !== this.nextSeq()) throw new Error(`batch seq ${seq} is not the next one (${this.nextSeq()})`);
    if (this.options.dir) {
      const tmp = join(this.options.dir, `${seq}.batch.tmp`);
      writeFileSync(tmp, bytes);
      renameSync(tmp, join(this.options.dir, `${seq}.batch`));
    }
    this.entries.push({ seq, bytes, events });
    this.bytes += bytes.length;
    this.lastSeq = seq;
    this.saveState();
    // Over the bound: the oldest go first (the newest say most about now), never the one just added.
    while (this.bytes > this.maxBytes && this.entries.length > 1) {
      const oldest = this.entries.shift();
      if (!oldest) break;
      this.bytes -= oldest.bytes.length;
      this.droppedEvents += oldest.events;
      this.unreportedLoss += oldest.events;
      if (this.options.dir) rmSync(join(this.options.dir, `${oldest.seq}.batch`), { force: true });
    }
  }

  /** Forgets every batch up to seq (cumulative ack). */
  ack(upTo: bigint): void {
    if (upTo <= this.acked) return;
    this.acked = upTo > this.lastSeq ? this.lastSeq : upTo;
    while (this.entries.length && (this.entries[0]?.seq ?? 0n) <= this.acked) {
      const done = this.entries.shift();
      if (!done) break;
      this.bytes -= done.bytes.length;
      if (this.options.dir) rmSync(join(this.options.dir, `${done.seq}.batch`), { force: true });
    }
    this.saveState();
  }

  /** Unacked batches after seq, oldest first, encoded. */
  *after(seq: bigint): Generator<{ seq: bigint; bytes: Uint8Array }> {
    for (const e of this.entries) if (e.seq > seq) yield { seq: e.seq, bytes: e.bytes };
  }
}
