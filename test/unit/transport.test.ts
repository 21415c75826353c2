// The agent's transport: outbox and spool (bounded, recovered after a kill),
// batching, and the gRPC client against a small real grpc-js ingest on
// loopback that acks, breaks, restarts: every batch arrives, none is lost,
// resends are removed by seq as the real ingest's dedup does.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { irqtrace, toBigInt, toLong } from '@irqtrace/proto';
import { AgentMetrics, Batcher, IngestClient, Outbox } from '@irqtrace/agent';
import type { TlsOptions } from '@irqtrace/agent';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { waitUntil } from '../lib/wait.js';
import { makePki } from '../lib/certs.js';
import { FakeIngest } from '../lib/fake_ingest.js';

const v1 = irqtrace.v1;

function batch(seq: bigint, events = 2): irqtrace.v1.EventBatch {
  return v1.EventBatch.create({
    seq: toLong(seq),
    events: Array.from({ length: events }, (_, i) => ({ cpu: i, durationNs: toLong(1_000_000n + seq), task: { comm: `t${seq}` } })),
  });
}

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

function hello(outbox: Outbox): () => irqtrace.v1.IHello {
  return () => ({ node: 'node-a', bootId: 'boot-1', lastAckedSeq: toLong(outbox.ackedSeq), protocolVersion: 1 });
}

describe('outbox and spool', () => {
  it('keeps unacked batches across a kill of the agent, and continues the seq', () => {
    const dir = mkdtempSync(join(tmpdir(), 'irqtrace-spool-'));
    const first = new Outbox({ dir });
    for (let s = 1n; s <= 3n; s++) first.add(batch(s));
    first.ack(1n);
    // No shutdown: the process just dies. A new one reads the spool.
    const second = new Outbox({ dir });
    expect([...second.after(0n)].map((b) => b.seq)).toEqual([2n, 3n]);
    expect(second.ackedSeq).toBe(1n);
    expect(second.nextSeq()).toBe(4n);
    expect(() => { second.add(batch(9n)); }).toThrow(/not the next one \(4\)/);
    second.ack(3n);
    expect(new Outbox({ dir }).size).toBe(0);
  });

  it('drops the oldest batches past its bound and reports their events as lost', () => {
    const outbox = new Outbox({ maxBytes: 250 });
    for (let s = 1n; s <= 10n; s++) outbox.add(batch(s, 3));
    expect(outbox.sizeBytes).toBeLessThanOrEqual(250);
    expect(outbox.droppedEvents).toBe(3 * (10 - outbox.size));
    expect(outbox.takeLoss()).toBe(outbox.droppedEvents);
    expect(outbox.takeLoss()).toBe(0);
    expect([...outbox.after(0n)].at(-1)?.seq).toBe(10n);
  });
});

describe('batching', () => {
  it('closes batches by size and by time, seq after seq, with losses and snapshots aboard', async () => {
    const outbox = new Outbox();
    const seqs: bigint[] = [];
    const batcher = new Batcher(outbox, { maxEvents: 3, maxDelayMs: 50, onBatch: (s) => seqs.push(s) });
    for (let i = 0; i < 7; i++) batcher.add({ cpu: i });
    expect(seqs).toEqual([1n, 2n]);
    batcher.loss(v1.LossStage.LOSS_STAGE_KERNEL_RING, 5n, 'ring full', 1);
    batcher.loss(v1.LossStage.LOSS_STAGE_KERNEL_RING, 2n, 'ring full', 1);
    await waitUntil('the time-closed batch', 2000, async () => Promise.resolve(seqs.length === 3));
    const third = v1.EventBatch.decode([...outbox.after(2n)][0]?.bytes ?? new Uint8Array());
    expect(third.events).toHaveLength(1);
    expect(third.losses.map((l) => [l.reason, toBigInt(l.count), l.cpu])).toEqual([['ring full', 7n, 1]]);
    batcher.snapshot({ takenNs: toLong(1n), histograms: [{ cpu: 0, count: toLong(3n) }] });
    expect(v1.EventBatch.decode([...outbox.after(3n)][0]?.bytes ?? new Uint8Array()).histograms?.histograms).toHaveLength(1);
  });

  it('counts what it cannot hold', () => {
    const batcher = new Batcher(new Outbox(), { maxEvents: 1000, maxPending: 5 });
    for (let i = 0; i < 8; i++) batcher.add({ cpu: i });
    expect(batcher.dropped).toBe(3);
    batcher.stop();
  });

  it('counts every loss a batch carries in the agent metric: the kernel ones, its own and the spool ones', async () => {
    const outbox = new Outbox({ maxBytes: 600 });
    const metrics = new AgentMetrics();
    const batcher = new Batcher(outbox, { maxEvents: 5, maxPending: 5, onLoss: (stage, count, reason) => { metrics.countLoss(stage, count, reason); } });
    batcher.loss(v1.LossStage.LOSS_STAGE_KERNEL_RING, 4n, 'kernel ring full', 0);
    batcher.loss(v1.LossStage.LOSS_STAGE_KERNEL_GUARD, 1n, 'probe re-entered', 1);
    batcher.loss(v1.LossStage.LOSS_STAGE_AGENT_QUEUE, 2, 'agent attribution queue full');
    // Batches of 5 events of ~60 bytes each: the 600-byte spool holds a few, the oldest go.
    for (let i = 0; i < 40; i++) batcher.add({ cpu: i, task: { comm: 'x'.repeat(50) } });
    batcher.flush();
    expect(outbox.droppedEvents).toBeGreaterThan(0);
    const text = await metrics.registry.metrics();
    const metric = (stage: string) => Number(new RegExp(`^irqtrace_dropped_total\\{stage="${stage}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    expect(metric('kernel_ring')).toBe(4);
    expect(metric('kernel_guard')).toBe(1);
    expect(metric('agent_attribution')).toBe(2);
    // Counted as each loss went into a batch; what the last batch pushed out is for the next one.
    expect(metric('agent_spool') + outbox.takeLoss()).toBe(outbox.droppedEvents);
    expect(metric('agent_spool')).toBeGreaterThan(0);
  });
});

describe('the gRPC client', () => {
  it('sends hello and every batch, frees the outbox on acks, and takes the node config', async () => {
    const ingest = new FakeIngest();
    await ingest.start();
    stops.push(() => { ingest.kill(); });
    const outbox = new Outbox();
    const configs: irqtrace.v1.INodeConfig[] = [];
    const client = new IngestClient({ address: `127.0.0.1:${ingest.port}`, hello: hello(outbox), outbox, onConfig: (c) => configs.push(c) });
    stops.push(() => client.stop());
    client.start();
    for (let s = 1n; s <= 20n; s++) {
      outbox.add(batch(s));
      client.pump();
    }
    await waitUntil('all acks', 10_000, async () => Promise.resolve(outbox.size === 0));
    expect(ingest.received).toEqual(Array.from({ length: 20 }, (_, i) => BigInt(i + 1)));
    expect(ingest.hellos[0]).toMatchObject({ node: 'node-a', bootId: 'boot-1' });
    expect(configs[0]?.traces?.[0]?.name).toBe('lab');
  });

  it('re-sends what was unacked after the ingest dies and comes back: nothing lost, duplicates only by seq', async () => {
    const ingest = new FakeIngest();
    await ingest.start();
    const port = ingest.port;
    stops.push(() => { ingest.kill(); });
    const dir = mkdtempSync(join(tmpdir(), 'irqtrace-spool-'));
    const outbox = new Outbox({ dir });
    const client = new IngestClient({ address: `127.0.0.1:${port}`, hello: hello(outbox), outbox, backoffBaseMs: 50, backoffMaxMs: 200 });
    stops.push(() => client.stop());
    client.start();
    // The ingest takes batches but stops acking after 5 (e.g. NATS is down), then dies.
    ingest.ackUpTo = 5;
    for (let s = 1n; s <= 12n; s++) {
      outbox.add(batch(s));
      client.pump();
    }
    await waitUntil('12 batches received', 10_000, async () => Promise.resolve(ingest.received.length >= 12));
    expect(outbox.ackedSeq).toBe(5n);
    ingest.kill();
    // While it is down, more events come.
    for (let s = 13n; s <= 15n; s++) {
      outbox.add(batch(s));
      client.pump();
    }
    const revived = new FakeIngest();
    revived.received = [...ingest.received];
    await revived.start(port);
    stops.push(() => { revived.kill(); });
    await waitUntil('the outbox drained after the reconnect', 20_000, async () => Promise.resolve(outbox.size === 0));
    const unique = [...new Set(revived.received)].sort((a, b) => Number(a - b));
    expect(unique).toEqual(Array.from({ length: 15 }, (_, i) => BigInt(i + 1)));
    // 6..12 went twice: once before the restart (unacked), once after.
    expect(revived.received.length).toBeGreaterThan(15);
    expect(revived.hellos[0]?.lastAckedSeq?.toString()).toBe('5');
    expect(client.connects).toBeGreaterThanOrEqual(2);
  });

  describe('over TLS', () => {
    const pki = makePki('ingest.irqtrace.test');
    const mtls = () => grpc.ServerCredentials.createSsl(pki.ca, [{ private_key: pki.server.key, cert_chain: pki.server.cert }], true);

    /** A client of a fresh mTLS ingest, with the warnings it logs. */
    async function connect(tls: TlsOptions) {
      const ingest = new FakeIngest();
      await ingest.start(0, mtls());
      stops.push(() => { ingest.kill(); });
      const warnings: string[] = [];
      const log = pino({ level: 'warn' }, { write: (line: string) => { warnings.push(line); } });
      const outbox = new Outbox();
      const client = new IngestClient({ address: `127.0.0.1:${ingest.port}`, tls, hello: hello(outbox), outbox, backoffBaseMs: 50, backoffMaxMs: 200, log });
      stops.push(() => client.stop());
      client.start();
      outbox.add(batch(1n));
      client.pump();
      return { ingest, outbox, warnings };
    }

    it('streams to an ingest that checks the client certificate (mTLS, server name override)', async () => {
      const { ingest, outbox } = await connect({ ca: pki.ca, cert: pki.client.cert, key: pki.client.key, serverName: 'ingest.irqtrace.test' });
      await waitUntil('the batch acked over mTLS', 10_000, async () => Promise.resolve(outbox.size === 0));
      expect(ingest.hellos[0]).toMatchObject({ node: 'node-a' });
      expect(ingest.received).toEqual([1n]);
    });

    it('does not get through without a client certificate, or trusting another CA: it keeps the batch and says why', async () => {
      const other = makePki('ingest.irqtrace.test');
      for (const tls of [{ ca: pki.ca }, { ca: other.ca, cert: pki.client.cert, key: pki.client.key }]) {
        const { ingest, outbox, warnings } = await connect(tls);
        await waitUntil('a broken-stream warning', 10_000, async () => Promise.resolve(warnings.some((w) => w.includes('reconnecting'))));
        expect(ingest.hellos).toEqual([]);
        expect(outbox.size).toBe(1);
      }
    });
  });
});

