// Agent transport -> ingest -> NATS JetStream -> status aggregator -> the
// IrqTrace's status, all real (kube-apiserver, nats-server, the agent's
// IngestClient and Outbox fed synthetic events). The ingest and the
// aggregator are killed mid-stream and started again: the final counts are
// exact, every batch counted once.
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irqtrace, toLong } from '@irqtrace/proto';
import { IngestClient, Outbox } from '@irqtrace/agent';
import { TraceController } from '../src/controller/controller.js';
import { ClusterNodeConfigs } from '../src/ingest/node_configs.js';
import { IngestMetrics } from '../src/ingest/metrics.js';
import { StreamPublisher } from '../src/ingest/publisher.js';
import { IngestServer } from '../src/ingest/server.js';
import { PodMetadataDirectory } from '../src/ingest/pod_directory.js';
import { AppliedConfigReader } from '../src/ingest/applied.js';
import { CONSUMER, StatusAggregator } from '../src/status/aggregator.js';
import { STREAM, subject } from '../src/ingest/subjects.js';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { waitUntil } from '../../test/lib/wait.js';
import { installIrqTraceApi } from '../../test/lib/irqtrace_api.js';
import { startCluster } from '../../test/cluster/cluster.js';
import type { Cluster } from '../../test/cluster/cluster.js';
import { startNats } from '../../test/nats/nats.js';
import type { Nats } from '../../test/nats/nats.js';

const v1 = irqtrace.v1;
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const BATCHES = 40;
const PER_BATCH = 25;

let cluster: Cluster;
let nats: Nats;
let kc: k8s.KubeConfig;
let podUid = '';
const stops: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  [cluster, nats] = await Promise.all([startCluster({ controllerManager: false }), startNats()]);
  kc = new k8s.KubeConfig();
  kc.loadFromString(cluster.kubeconfig);
  await installIrqTraceApi(cluster);
  await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n  labels: {pool: latency}\n');
  // A pod (no kubelet: it stays Pending) whose tasks the events name by UID.
  await cluster.kubectl(['create', 'namespace', 'shop']);
  await cluster.kubectl(['create', 'serviceaccount', 'default', '-n', 'shop']);
  await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: checkout\n  namespace: shop\nspec:\n  nodeName: worker-1\n  containers: [{name: app, image: shop/checkout:1}]\n');
  podUid = (await cluster.kubectl(['get', 'pod', '-n', 'shop', 'checkout', '-o', 'jsonpath={.metadata.uid}'])).stdout;
});

afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await Promise.all([cluster.stop(), nats.stop()]);
});

interface Status {
  violations?: number;
  maxDurationNs?: number;
  nodesSummary?: string;
  worst?: string;
  worstOffenders?: { comm?: string; pid?: number; pod?: string }[];
  conditions?: { type: string; status: string; reason: string }[];
}

async function status(name: string): Promise<Status | undefined> {
  const r = await cluster.kubectl(['get', 'irqtrace', name, '-o', 'jsonpath={.status}']);
  return r.code === 0 && r.stdout ? (JSON.parse(r.stdout) as Status) : undefined;
}

async function startIngest(port: number, publisher: StreamPublisher, configs: ClusterNodeConfigs, pods: PodMetadataDirectory): Promise<IngestServer> {
  const server = new IngestServer({ publisher, configs, pods, metrics: new IngestMetrics(), log, name: 'ingest-0' });
  await server.listen('127.0.0.1', port);
  return server;
}

describe('agent to IrqTrace status', () => {
  it('counts every event once through kills of the ingest and the aggregator', async () => {
    // The ingest here records no applied configs (the synthetic agent reports none): deleted traces wait for no node.
    const applied = await AppliedConfigReader.connect(nats.url, log);
    stops.push(() => applied.stop());
    const controller = new TraceController({ kubeConfig: kc, agents: { namespace: 'irqtrace-system', image: 'irqtrace/agent:test', ingestAddress: 'unused:1' }, log, applied });
    await controller.start();
    stops.push(() => controller.stop());
    await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: latency\nspec:\n  nodeSelector: {matchLabels: {pool: latency}}\n  target: {all: true}\n  threshold: 500us\n');

    const configs = new ClusterNodeConfigs(kc, log);
    await configs.start();
    stops.push(() => configs.stop());
    const publisher = await StreamPublisher.connect(nats.url, {}, log);
    stops.push(() => publisher.close());
    const pods = new PodMetadataDirectory(kc, log);
    await pods.start();
    stops.push(() => pods.stop());
    expect(pods.lookup(podUid)).toEqual({ namespace: 'shop', name: 'checkout' });
    // Pods made later come through the (metadata-only) watch.
    await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: cart\n  namespace: shop\nspec:\n  containers: [{name: app, image: shop/cart:1}]\n');
    const cartUid = (await cluster.kubectl(['get', 'pod', '-n', 'shop', 'cart', '-o', 'jsonpath={.metadata.uid}'])).stdout;
    await waitUntil('the new pod in the directory', 10_000, async () => Promise.resolve(pods.lookup(cartUid)?.name === 'cart'));
    let ingest = await startIngest(0, publisher, configs, pods);
    const port = ingest.port;
    stops.push(() => ingest.close());
    // The first aggregator never checkpoints: what it is given is lost with it.
    let aggregator = new StatusAggregator({ servers: nats.url, kubeConfig: kc, log, statusIntervalMs: 500, checkpointMs: 600_000 });
    await aggregator.start();

    const outbox = new Outbox();
    const configsSeen: irqtrace.v1.INodeConfig[] = [];
    const client = new IngestClient({
      address: `127.0.0.1:${port}`,
      outbox,
      hello: () => ({ node: 'worker-1', bootId: 'b1', lastAckedSeq: toLong(outbox.ackedSeq), protocolVersion: 1 }),
      onConfig: (c) => configsSeen.push(c),
      backoffBaseMs: 50,
      backoffMaxMs: 300,
      heartbeatMs: 300,
    });
    client.start();
    stops.push(() => client.stop());
    // The node's config comes from the IrqTrace, by the Node's labels.
    await waitUntil('the trace pushed to the agent', 15_000, async () => Promise.resolve(configsSeen.at(-1)?.traces?.[0]?.name === 'latency'));
    expect(configsSeen.at(-1)?.traces?.[0]).toMatchObject({ name: 'latency', target: { all: true } });

    let longest = 0;
    const send = (seq: number) => {
      const events = Array.from({ length: PER_BATCH }, (_, i) => {
        const us = 500 + ((seq * 37 + i * 11) % 2000);
        longest = Math.max(longest, us * 1000);
        return { kind: v1.SectionKind.SECTION_KIND_IRQS_OFF, cpu: i % 4, durationNs: toLong(BigInt(us) * 1000n), task: { pid: 1000 + seq, comm: `w${seq}`, podUid }, traces: ['latency'] };
      });
      outbox.add(v1.EventBatch.create({ seq: toLong(BigInt(seq)), events }));
      client.pump();
    };

    for (let s = 1; s <= 15; s++) send(s);
    await waitUntil('15 acked', 15_000, async () => Promise.resolve(outbox.ackedSeq === 15n));
    // The ingest dies with batches in flight, and comes back on its port.
    for (let s = 16; s <= 20; s++) send(s);
    await ingest.close();
    for (let s = 21; s <= 25; s++) send(s);
    ingest = await startIngest(port, publisher, configs, pods);
    await waitUntil('25 acked', 20_000, async () => Promise.resolve(outbox.ackedSeq === 25n));
    // The aggregator crashes with messages delivered to it and neither checkpointed nor acked, and a
    // new one takes over while more arrive: JetStream would redeliver the lost ones only after
    // ack_wait, behind the new ones, so the new aggregator must start from its checkpoint instead.
    await waitUntil('some applied', 15_000, async () => Promise.resolve(aggregator.applied > 0));
    await aggregator.crash();
    aggregator = new StatusAggregator({ servers: nats.url, kubeConfig: kc, log, statusIntervalMs: 500, checkpointMs: 200 });
    await aggregator.start();
    for (let s = 26; s <= 32; s++) send(s);
    await waitUntil('32 acked', 20_000, async () => Promise.resolve(outbox.ackedSeq === 32n));
    await waitUntil('the status counting every event so far', 30_000, async () => (await status('latency'))?.violations === 32 * PER_BATCH);
    await aggregator.crash();
    for (let s = 33; s <= BATCHES; s++) send(s);
    await waitUntil('all acked', 20_000, async () => Promise.resolve(outbox.ackedSeq === BigInt(BATCHES)));
    // Worse: the consumer is gone too; the next aggregator makes it again at its checkpoint.
    const nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).consumers.delete(STREAM, CONSUMER);
    // And a batch re-sent after JetStream's duplicate window (a new message id): counted once.
    const again = await jetstream(nc).publish(
      subject('latency', 'worker-1', 'events'),
      v1.NodeBatch.encode({ node: 'worker-1', bootId: 'b1', seq: toLong(3n), trace: 'latency', events: [{ durationNs: toLong(9_000_000n) }] }).finish(),
      { msgID: 'worker-1/b1/3/latency/events/late' },
    );
    expect(again.duplicate).toBe(false);
    await nc.close();
    aggregator = new StatusAggregator({ servers: nats.url, kubeConfig: kc, log, statusIntervalMs: 500, checkpointMs: 200 });
    await aggregator.start();
    stops.push(() => aggregator.stop());

    await waitUntil('the status counts every event', 30_000, async () => (await status('latency'))?.violations === BATCHES * PER_BATCH);
    // Stays exact: nothing more arrives, nothing is counted twice on a later pass.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const s = await status('latency');
    expect(s?.violations).toBe(BATCHES * PER_BATCH);
    expect(s?.maxDurationNs).toBe(longest);
    expect(s?.nodesSummary).toBe('1/1');
    expect(s?.conditions?.find((c) => c.type === 'Violating')).toMatchObject({ status: 'True', reason: 'ThresholdExceeded' });
    expect(s?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', reason: 'AgentsScheduled' });
    expect(s?.worstOffenders?.[0]?.pod).toBe('shop/checkout');
    // WORST names the pod, then its task.
    expect(s?.worst).toMatch(/^2\.\d\dms shop\/checkout \(w\d+\/\d+\) on worker-1$/);
    const table = await cluster.kubectl(['get', 'irqt', 'latency']);
    expect(table.stdout).toMatch(new RegExp(`\\nlatency\\s+all\\s+500us\\s+1/1\\s+${BATCHES * PER_BATCH}\\s+2\\.\\d\\dms shop/checkout \\(w\\d+/\\d+\\) on worker-1\\s+True\\s+\\d+s\\n`));
    // The Node leaves the trace's selector: its agent is told at once, on the open stream.
    await cluster.kubectl(['label', 'node', 'worker-1', 'pool=batch', '--overwrite']);
    await waitUntil('the trace taken from the agent', 15_000, async () => Promise.resolve(configsSeen.at(-1)?.traces?.length === 0));

    // Deleted and made again under the same name, a trace starts from nothing, after a restart too.
    await cluster.kubectl(['delete', 'irqtrace', 'latency']);
    await waitUntil('the trace gone', 15_000, async () => (await cluster.kubectl(['get', 'irqtrace', 'latency'])).code !== 0);
    await cluster.kubectl(['label', 'node', 'worker-1', 'pool=latency', '--overwrite']);
    await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: latency\nspec:\n  nodeSelector: {matchLabels: {pool: latency}}\n  target: {all: true}\n  threshold: 500us\n');
    await waitUntil('the new trace pushed to the agent', 15_000, async () => Promise.resolve(configsSeen.at(-1)?.traces?.[0]?.name === 'latency'));
    send(BATCHES + 1);
    await waitUntil('the new trace counting only its own events', 30_000, async () => (await status('latency'))?.violations === PER_BATCH);
    await aggregator.crash();
    aggregator = new StatusAggregator({ servers: nats.url, kubeConfig: kc, log, statusIntervalMs: 500, checkpointMs: 200 });
    await aggregator.start();
    send(BATCHES + 2);
    await waitUntil('still only its own events', 30_000, async () => (await status('latency'))?.violations === 2 * PER_BATCH);
  });
});
