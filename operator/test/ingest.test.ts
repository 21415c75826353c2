// The ingest between the real agent transport (IngestClient, Outbox) and a
// real nats-server with JetStream: config on hello and on change, every batch
// published per trace and node before it is acked, re-sends stored once
// (Nats-Msg-Id), nothing lost across a NATS outage, bad agents refused,
// malformed streams ended without harm to others.
import * as grpc from '@grpc/grpc-js';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { irqtrace, toBigInt, toLong } from '@irqtrace/proto';
import { IngestClient, Outbox } from '@irqtrace/agent';
import type { TlsOptions } from '@irqtrace/agent';
import { makePki } from '../../test/lib/certs.js';
import { IngestServer } from '../src/ingest/server.js';
import type { NodeConfigSource } from '../src/ingest/server.js';
import { IngestMetrics } from '../src/ingest/metrics.js';
import { StreamPublisher } from '../src/ingest/publisher.js';
import { STREAM, parseSubject, subject } from '../src/ingest/subjects.js';
import { waitUntil } from '../../test/lib/wait.js';
import { startNats } from '../../test/nats/nats.js';
import type { Nats } from '../../test/nats/nats.js';

const v1 = irqtrace.v1;
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const NODE = 'worker-1.example.com';

/** Traces per node, changeable: the pure stand-in for the cluster's informers. */
class StaticConfigs implements NodeConfigSource {
  private readonly listeners: (() => void)[] = [];
  constructor(public traces: irqtrace.v1.ITraceConfig[]) {}
  tracesFor(): irqtrace.v1.ITraceConfig[] {
    return this.traces;
  }
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }
  set(traces: irqtrace.v1.ITraceConfig[]): void {
    this.traces = traces;
    for (const l of this.listeners) l();
  }
}

let nats: Nats;
let nc: NatsConnection;
let publisher: StreamPublisher;
const stops: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  nats = await startNats();
  publisher = await StreamPublisher.connect(nats.url, { maxAgeMs: 3600_000, maxBytes: 64 << 20 }, log);
  nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
});

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  const jsm = await jetstreamManager(nc);
  await jsm.streams.purge(STREAM);
});

afterAll(async () => {
  await nc.close();
  await publisher.close();
  await nats.stop();
});

async function startIngest(configs: NodeConfigSource, pods = new Map<string, { namespace: string; name: string }>(), via: Pick<StreamPublisher, 'publish'> = publisher) {
  const metrics = new IngestMetrics();
  const server = new IngestServer({ publisher: via, configs, pods: { lookup: (uid) => pods.get(uid) }, metrics, log, name: 'ingest-0' });
  const port = await server.listen('127.0.0.1', 0);
  stops.push(() => server.close());
  return { server, port, metrics };
}

function startAgent(port: number, node = NODE, bootId = 'boot-1') {
  const outbox = new Outbox();
  const configs: irqtrace.v1.INodeConfig[] = [];
  const refusals: string[] = [];
  const client = new IngestClient({
    address: `127.0.0.1:${port}`,
    outbox,
    hello: () => ({ node, bootId, lastAckedSeq: toLong(outbox.ackedSeq), protocolVersion: 1, kernelRelease: '6.1.0-test' }),
    onConfig: (c) => configs.push(c),
    onRefusal: (r) => refusals.push(r),
    backoffBaseMs: 50,
    backoffMaxMs: 300,
    heartbeatMs: 200,
  });
  client.start();
  stops.push(() => client.stop());
  const send = (seq: bigint, events: irqtrace.v1.IEvent[], extra: Partial<irqtrace.v1.IEventBatch> = {}) => {
    outbox.add(v1.EventBatch.create({ seq: toLong(seq), events, ...extra }));
    client.pump();
  };
  return { client, outbox, configs, refusals, send };
}

const event = (pid: number, traces: string[], podUid = '') => ({ cpu: 1, durationNs: toLong(1_000_000n + BigInt(pid)), task: { pid, comm: `t${pid}`, podUid }, traces });

/** Every message in the stream, decoded, in stream order. */
async function streamMessages(): Promise<{ subject: string; seq: number; batch?: irqtrace.v1.NodeBatch; state?: irqtrace.v1.NodeState }[]> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(STREAM);
  const out: { subject: string; seq: number; batch?: irqtrace.v1.NodeBatch; state?: irqtrace.v1.NodeState }[] = [];
  if (!info.state.messages) return out;
  const consumer = await js.consumers.get(STREAM, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.fetch({ max_messages: info.state.messages, expires: 5000 });
  for await (const m of messages) {
    const kind = parseSubject(m.subject)?.kind;
    out.push(kind === 'state' ? { subject: m.subject, seq: m.seq, state: v1.NodeState.decode(m.data) } : { subject: m.subject, seq: m.seq, batch: v1.NodeBatch.decode(m.data) });
    if (out.length >= info.state.messages) break;
  }
  return out;
}

describe('the ingest', () => {
  it('sends the config on hello and on change, publishes per trace and node, acks after the PubAcks', async () => {
    const configs = new StaticConfigs([{ name: 'cpus', target: { all: true } }, { name: 'nic.lines', target: { irqs: [24] } }]);
    const { metrics } = await startIngestAnd(configs);
    const agent = startAgent(ingestPort);
    await waitUntil('the config', 10_000, async () => Promise.resolve(agent.configs.length === 1));
    expect(agent.configs[0]?.traces?.map((t) => t.name)).toEqual(['cpus', 'nic.lines']);

    agent.send(1n, [event(10, ['cpus'], 'uid-a'), event(11, ['cpus', 'nic.lines']), event(12, [])], {
      losses: [{ stage: v1.LossStage.LOSS_STAGE_KERNEL_RING, count: toLong(3n), reason: 'ring full' }],
      histograms: { takenNs: toLong(5n), histograms: [{ cpu: 0, count: toLong(9n) }] },
    });
    agent.send(2n, [event(13, ['nic.lines'])]);
    await waitUntil('both batches acked', 10_000, async () => Promise.resolve(agent.outbox.ackedSeq === 2n));

    const all = await streamMessages();
    const batches = all.filter((m) => m.batch);
    const summary = batches.map((m) => [m.subject, toBigInt(m.batch?.seq).toString(), m.batch?.events.map((e) => e.task?.pid).join(',') ?? '', m.batch?.losses.length ?? 0, m.batch?.histograms ? 'hist' : '']);
    // Node and trace names with dots are one subject token each.
    const cpus = subject('cpus', NODE, 'events');
    expect(cpus).toBe('irqtrace.cpus.worker-1%2Eexample%2Ecom.events');
    expect(summary).toEqual(
      expect.arrayContaining([
        [cpus, '1', '10,11,12', 1, ''],
        [subject('cpus', NODE, 'hist'), '1', '', 0, 'hist'],
        [subject('nic.lines', NODE, 'events'), '1', '11,12', 1, ''],
        [subject('nic.lines', NODE, 'hist'), '1', '', 0, 'hist'],
        [subject('nic.lines', NODE, 'events'), '2', '13', 0, ''],
      ]),
    );
    expect(summary).toHaveLength(5);
    // The pod's namespace and name, from its UID.
    expect(batches[0]?.batch?.events[0]?.task).toMatchObject({ podUid: 'uid-a', podNamespace: 'shop', podName: 'checkout-7d9' });
    expect(all.some((m) => m.state?.connection === v1.NodeState.Connection.CONNECTION_CONNECTED && m.state.kernelRelease === '6.1.0-test')).toBe(true);
    expect(await metrics.registry.getSingleMetricAsString('irqtrace_ingest_events_total')).toMatch(/ 6$/m);

    // A change of the node's traces reaches the agent on its open stream.
    configs.set([{ name: 'cpus', target: { all: true } }]);
    await waitUntil('the new config', 10_000, async () => Promise.resolve(agent.configs.length === 2));
    expect(agent.configs[1]?.traces?.map((t) => t.name)).toEqual(['cpus']);
    expect(toBigInt(agent.configs[1]?.version)).toBeGreaterThan(toBigInt(agent.configs[0]?.version));
  });

  it('stores a re-sent batch once, and loses nothing while NATS is down', async () => {
    await startIngestAnd(new StaticConfigs([{ name: 'cpus', target: { all: true } }]));
    // A new boot: JetStream remembers the first test's message ids (boot-1) for its whole window, purge or not.
    const agent = startAgent(ingestPort, NODE, 'boot-2');
    for (let s = 1n; s <= 3n; s++) agent.send(s, [event(Number(s), ['cpus'])]);
    await waitUntil('3 acked', 10_000, async () => Promise.resolve(agent.outbox.ackedSeq === 3n));

    // The same batches again (an agent that lost its acks): JetStream keeps one copy.
    const js = jetstream(nc);
    const again = await js.publish(subject('cpus', NODE, 'events'), v1.NodeBatch.encode({ node: NODE, bootId: 'boot-2', seq: toLong(2n), trace: 'cpus' }).finish(), { msgID: `${NODE}/boot-2/2/cpus/events` });
    expect(again.duplicate).toBe(true);

    await nats.stop({ keepStore: true });
    for (let s = 4n; s <= 6n; s++) agent.send(s, [event(Number(s), ['cpus'])]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(agent.outbox.ackedSeq).toBe(3n);
    await nats.restart();
    await waitUntil('6 acked after NATS is back', 30_000, async () => Promise.resolve(agent.outbox.ackedSeq === 6n));
    const seqs = (await streamMessages()).filter((m) => m.batch?.events.length).map((m) => toBigInt(m.batch?.seq));
    expect(seqs).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
  });

  it('holds a fast agent back while JetStream is slow, in one stream: every batch acked, none sent twice', async () => {
    // Every publish 20 ms late, as from an ingest on a slow node: the agent (window 64) sends faster
    // than the ingest publishes (at most 32 waiting). The landed ingest cut the stream off at 32, and the
    // agent, re-sending its whole backlog at each reconnect, got stuck there.
    const slow: Pick<StreamPublisher, 'publish'> = {
      publish: async (subj, data, msgID) => {
        await new Promise((r) => setTimeout(r, 20));
        return publisher.publish(subj, data, msgID);
      },
    };
    const { port, metrics } = await startIngest(new StaticConfigs([{ name: 'cpus', target: { all: true } }]), new Map(), slow);
    const agent = startAgent(port, NODE, 'boot-3');
    await waitUntil('connected', 10_000, async () => Promise.resolve(agent.client.connected));
    for (let s = 1n; s <= 200n; s++) agent.send(s, [event(Number(s), ['cpus'])]);
    await waitUntil('200 acked', 60_000, async () => Promise.resolve(agent.outbox.ackedSeq === 200n));
    expect(agent.client.connects).toBe(1);
    expect(agent.client.resent).toBe(0);
    expect(await metrics.registry.getSingleMetricAsString('irqtrace_ingest_backpressure_total')).toMatch(/ [1-9]\d*$/m);
  });

  it('refuses a bad hello with the reason, and a malformed stream ends alone', async () => {
    await startIngestAnd(new StaticConfigs([{ name: 'cpus', target: { all: true } }]));
    const bad = startAgent(ingestPort, 'Not_A_Node');
    await waitUntil('the refusal', 10_000, async () => Promise.resolve(bad.refusals.length > 0));
    expect(bad.refusals[0]).toBe("hello.node 'Not_A_Node' is not a node name");
    await bad.client.stop();

    // Bytes that are no AgentMessage end that call (INVALID_ARGUMENT); the server serves the next agent.
    const raw = new grpc.Client(`127.0.0.1:${ingestPort}`, grpc.credentials.createInsecure());
    const call = raw.makeBidiStreamRequest('/irqtrace.v1.IngestService/Connect', (b: Buffer) => b, (b: Buffer) => b);
    const ended = new Promise<string>((resolve) => {
      call.on('error', (err: grpc.ServiceError) => { resolve(grpc.status[err.code]); });
      call.on('data', () => {});
    });
    call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    expect(await ended).toBe('INVALID_ARGUMENT');
    raw.close();

    const good = startAgent(ingestPort, 'worker-2');
    good.send(1n, [event(1, ['cpus'])]);
    await waitUntil('the good agent acked', 10_000, async () => Promise.resolve(good.outbox.ackedSeq === 1n));
  });
  it('takes agents over mTLS, and refuses one without a client certificate', async () => {
    const pki = makePki('ingest.irqtrace.test');
    const server = new IngestServer({
      publisher,
      configs: new StaticConfigs([{ name: 'cpus', target: { all: true } }]),
      pods: { lookup: () => undefined },
      metrics: new IngestMetrics(),
      log,
      name: 'ingest-tls',
      tls: { ca: pki.ca, cert: pki.server.cert, key: pki.server.key, requireClientCert: true },
    });
    const port = await server.listen('127.0.0.1', 0);
    stops.push(() => server.close());
    const connectWith = (tls: TlsOptions) => {
      const outbox = new Outbox();
      const client = new IngestClient({ address: `127.0.0.1:${port}`, tls, outbox, hello: () => ({ node: 'tls-node', bootId: 'boot-tls', protocolVersion: 1 }), backoffBaseMs: 50, backoffMaxMs: 200 });
      client.start();
      stops.push(() => client.stop());
      outbox.add(v1.EventBatch.create({ seq: toLong(1n), events: [event(1, ['cpus'])] }));
      client.pump();
      return outbox;
    };
    const trusted = connectWith({ ca: pki.ca, cert: pki.client.cert, key: pki.client.key, serverName: 'ingest.irqtrace.test' });
    await waitUntil('acked over mTLS', 10_000, async () => Promise.resolve(trusted.ackedSeq === 1n));
    const anonymous = connectWith({ ca: pki.ca, serverName: 'ingest.irqtrace.test' });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(anonymous.ackedSeq).toBe(0n);
    expect(server.connected).toEqual(['tls-node']);
  });
});

let ingestPort = 0;
async function startIngestAnd(configs: StaticConfigs) {
  const started = await startIngest(configs, new Map([['uid-a', { namespace: 'shop', name: 'checkout-7d9' }]]));
  ingestPort = started.port;
  return started;
}
