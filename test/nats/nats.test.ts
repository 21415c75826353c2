// Smoke test of the NATS rig with the NATS JS v3 client: JetStream stream,
// publish with Nats-Msg-Id dedup, a durable consumer that survives a restart.
import { connect } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNats } from './nats.js';
import type { Nats } from './nats.js';

let nats: Nats;

beforeAll(async () => {
  nats = await startNats();
});

afterAll(async () => {
  await nats.stop();
});

describe('the NATS rig', () => {
  it('stores, deduplicates by message id and delivers to a durable consumer across a restart', async () => {
    let nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'SMOKE', subjects: ['smoke.>'], duplicate_window: 60_000_000_000 });
    await jsm.consumers.add('SMOKE', { durable_name: 'reader', ack_policy: AckPolicy.Explicit });

    const js = jetstream(nc);
    const first = await js.publish('smoke.node-a.events', 'batch 1', { msgID: 'node-a/boot-1/1' });
    const again = await js.publish('smoke.node-a.events', 'batch 1', { msgID: 'node-a/boot-1/1' });
    const second = await js.publish('smoke.node-a.events', 'batch 2', { msgID: 'node-a/boot-1/2' });
    expect(first.duplicate).toBe(false);
    expect(again.duplicate).toBe(true);
    expect(again.seq).toBe(first.seq);
    expect(second.seq).toBe(first.seq + 1);

    const consumer = await js.consumers.get('SMOKE', 'reader');
    const one = await consumer.next({ expires: 5000 });
    expect(one?.string()).toBe('batch 1');
    await one?.ackAck();

    // The consumer's position is durable: after a server restart it resumes at batch 2.
    await nc.close();
    await nats.stop({ keepStore: true });
    await nats.restart();
    nc = await connect({ servers: nats.url });
    const resumed = await jetstream(nc).consumers.get('SMOKE', 'reader');
    const two = await resumed.next({ expires: 5000 });
    expect(two?.string()).toBe('batch 2');
    expect(two?.headers?.get('Nats-Msg-Id')).toBe('node-a/boot-1/2');
    await two?.ackAck();
    const info = await jetstreamManager(nc).then((m) => m.streams.info('SMOKE'));
    expect(info.state.messages).toBe(2);
    await nc.close();
  });
});

describe('stopping NATS', () => {
  it('leaves nothing listening', async () => {
    const other = await startNats();
    await other.stop();
    await expect(connect({ servers: other.url, reconnect: false, timeout: 2000 })).rejects.toThrow();
  });
});
