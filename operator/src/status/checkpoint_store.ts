// The status aggregator's checkpoint, in a JetStream KV bucket: each trace's node records, and the
// stream position (the cursor) they all hold everything up to. Records are written before the
// cursor, so a cursor in the bucket never runs ahead of a record it covers.
import type { NatsConnection } from '@nats-io/nats-core';
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { kvKeyToken } from '../ingest/subjects.js';
import type { NodeRecord, TraceAggregate } from './aggregate.js';

export const BUCKET = 'IRQTRACE_STATUS';
/** The stream sequence every record is checkpointed through (record keys always have a dot). */
const CURSOR_KEY = 'cursor';

const recordKey = (trace: string, node: string): string => `${kvKeyToken(trace)}.${kvKeyToken(node)}`;

export interface StoredRecord {
  trace: string;
  node: string;
  record: NodeRecord;
}

export class CheckpointStore {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection): Promise<CheckpointStore> {
    return new CheckpointStore(await new Kvm(nc).create(BUCKET, { history: 1 }));
  }

  /** Every node record as last checkpointed, and the cursor (0: from the stream's start). */
  async restore(): Promise<{ records: StoredRecord[]; cursor: number }> {
    const records: StoredRecord[] = [];
    let cursor = 0;
    for await (const key of await this.kv.keys()) {
      const entry = await this.kv.get(key);
      if (!entry || entry.operation !== 'PUT') continue;
      if (key === CURSOR_KEY) cursor = Number(entry.string());
      else records.push(entry.json<StoredRecord>());
    }
    return { records, cursor };
  }

  /**
   * Writes every node record changed since it was last written, then the cursor. A node's mark
   * is cleared only once its write succeeded and only if it did not change meanwhile; the cursor
   * is written only when every record it covers is stored (else this rejects, and the next
   * write retries what failed).
   */
  async write(traces: Iterable<TraceAggregate>, cursor: number): Promise<void> {
    const writes: { a: TraceAggregate; node: string; change: number; put: Promise<unknown> }[] = [];
    for (const a of traces) {
      for (const [node, change] of a.dirty) {
        const record = a.nodes.get(node);
        if (record) writes.push({ a, node, change, put: this.kv.put(recordKey(a.trace, node), JSON.stringify({ trace: a.trace, node, record })) });
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
    await this.kv.put(CURSOR_KEY, String(cursor));
  }

  /** Drops a deleted trace's records. */
  async purge(trace: string): Promise<void> {
    for await (const key of await this.kv.keys(`${kvKeyToken(trace)}.>`)) await this.kv.purge(key);
  }
}
