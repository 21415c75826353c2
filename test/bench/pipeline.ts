// `npm run bench:pipeline`: N simulated agents (the real agent transport:
// IngestClient + Outbox, 100-event batches with 8-frame stacks) stream as fast
// as they are acked into the real `irqtrace-operator` — one process with the
// ingest role, one with the controller and status aggregator — through a real
// nats-server (JetStream), into the IrqTrace's status on a real kube-apiserver.
// Counted end to end: events/s until the status shows every event sent, what
// was lost or counted twice, and the lag from a probe event to the status.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { irqtrace, toLong } from '@irqtrace/proto';
import { IngestClient, Outbox } from '@irqtrace/agent';
import { operatorMain, scratchDir } from '../lib/paths.js';
import { freePort } from '../lib/ports.js';
import { Service } from '../lib/process.js';
import { waitUntil } from '../lib/wait.js';
import { installIrqTraceApi } from '../lib/irqtrace_api.js';
import { startCluster } from '../cluster/cluster.js';
import { startNats } from '../nats/nats.js';

const v1 = irqtrace.v1;
const AGENTS = Number(process.env.BENCH_AGENTS ?? 200);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const PER_BATCH = 100;
const IN_FLIGHT = 4;

function eventsBytes(node: number): Uint8Array {
  const stack = Array.from({ length: 8 }, (_, k) => ({ address: toLong(0xffffffff81000000n + BigInt(k * 0x1234)), symbol: `func_${k}`, offset: toLong(BigInt(k * 16)) }));
  const events = Array.from({ length: PER_BATCH }, (_, i) => ({
    kind: v1.SectionKind.SECTION_KIND_IRQS_OFF,
    method: v1.Method.METHOD_EXACT,
    cpu: i % 8,
    startNs: toLong(1_000_000_000n + BigInt(i)),
    durationNs: toLong(600_000n + BigInt((node * 7 + i) % 1000)),
    task: { pid: 1000 + i, tgid: 1000 + i, comm: 'bench', cgroupPath: '/kubepods/besteffort/pod0/abc', podUid: 'uid-0' },
    stack,
    traces: ['bench'],
  }));
  // Field 3 (events) of EventBatch, repeated: a batch is its seq then these bytes.
  const encoded = v1.EventBatch.encode({ events }).finish();
  return encoded;
}

function batchBytes(seq: bigint, events: Uint8Array): Uint8Array {
  const head = v1.EventBatch.encode({ seq: toLong(seq) }).finish();
  const out = new Uint8Array(head.length + events.length);
  out.set(head);
  out.set(events, head.length);
  return out;
}

async function main(): Promise<void> {
  const work = scratchDir('bench-pipeline');
  const [cluster, nats] = await Promise.all([startCluster({ controllerManager: false }), startNats()]);
  const services: Service[] = [];
  const clients: IngestClient[] = [];
  try {
    await installIrqTraceApi(cluster);
    await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: bench\nspec:\n  target: {all: true}\n  threshold: 500us\n');

    const ingestPort = await freePort();
    const operator = async (name: string, roles: string) => {
      const config = join(work, `${name}.yaml`);
      writeFileSync(config, `roles: [${roles}]\nleaderElection: {enabled: false}\nnats: {servers: ["${nats.url}"], maxAgeHours: 1, maxBytes: 4294967296}\ningest: {listen: "127.0.0.1:${ingestPort}", maxPendingPerAgent: 64}\nmetrics: {listen: "127.0.0.1:${await freePort()}"}\nstatusIntervalMs: 1000\n`);
      // BENCH_OPERATOR_FLAGS: node flags for the operator processes (e.g. --cpu-prof).
      const flags = (process.env.BENCH_OPERATOR_FLAGS ?? '').split(' ').filter(Boolean);
      const s = new Service(name, process.execPath, [...flags, '--max-old-space-size=2048', operatorMain, 'run', '--config', config, '--kubeconfig', cluster.kubeconfigPath], join(work, `${name}.log`), { env: { ...process.env, LOG_LEVEL: 'warn' } });
      services.push(s);
      return s;
    };
    await operator('ingest', 'ingest');
    await operator('leader', 'controller, status');
    await waitUntil('the ingest listening', 30_000, () => listening(ingestPort));

    const kc = new k8s.KubeConfig();
    kc.loadFromString(cluster.kubeconfig);
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const status = async () => ((await custom.getClusterCustomObject({ group: 'irqtrace.io', version: 'v1alpha1', plural: 'irqtraces', name: 'bench' })) as { status?: { violations?: number; maxDurationNs?: number } }).status ?? {};

    // The agents, each with its batch of events encoded once.
    const agents = Array.from({ length: AGENTS }, (_, i) => {
      const outbox = new Outbox({ maxBytes: 256 << 20 });
      const client = new IngestClient({ address: `127.0.0.1:${ingestPort}`, outbox, hello: () => ({ node: `node-${i}`, bootId: 'b', lastAckedSeq: toLong(outbox.ackedSeq), protocolVersion: 1 }), window: IN_FLIGHT, heartbeatMs: 5000 });
      clients.push(client);
      return { outbox, client, events: eventsBytes(i), sent: 0 };
    });
    for (const a of agents) a.client.start();
    await waitUntil('every agent connected', 60_000, async () => Promise.resolve(agents.every((a) => a.client.connected)));

    // A probe agent: one event a second, each longer than any before, timed into the status.
    const probeOutbox = new Outbox();
    const probe = new IngestClient({ address: `127.0.0.1:${ingestPort}`, outbox: probeOutbox, hello: () => ({ node: 'probe', bootId: 'b', lastAckedSeq: toLong(probeOutbox.ackedSeq), protocolVersion: 1 }) });
    clients.push(probe);
    probe.start();
    const probes: { durationNs: number; sentAt: number; seenAt?: number }[] = [];

    const started = Date.now();
    const end = started + SECONDS * 1000;
    let probeSeq = 0n;
    const probeTimer = setInterval(() => {
      probeSeq++;
      const durationNs = 50_000_000 + probes.length;
      probes.push({ durationNs, sentAt: Date.now() });
      probeOutbox.add(v1.EventBatch.create({ seq: toLong(probeSeq), events: [{ kind: v1.SectionKind.SECTION_KIND_IRQS_OFF, durationNs: toLong(BigInt(durationNs)), task: { pid: 1, comm: 'probe' }, traces: ['bench'] }] }));
      probe.pump();
    }, 1000);
    const watcher = setInterval(() => {
      void status().then((s) => {
        for (const p of probes) if (!p.seenAt && (s.maxDurationNs ?? 0) >= p.durationNs) p.seenAt = Date.now();
      }, () => {});
    }, 100);

    while (Date.now() < end) {
      for (const a of agents) {
        while (a.outbox.size < IN_FLIGHT * 2) {
          const seq = a.outbox.nextSeq();
          a.outbox.addEncoded(seq, batchBytes(seq, a.events), PER_BATCH);
          a.sent += PER_BATCH;
        }
        a.client.pump();
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    clearInterval(probeTimer);
    const sent = agents.reduce((n, a) => n + a.sent, 0) + probes.length;
    await waitUntil('every batch acked', 300_000, async () => Promise.resolve(agents.every((a) => a.outbox.size === 0) && probeOutbox.size === 0));
    const ackedAt = Date.now();
    let counted = 0;
    const caughtUp = await waitUntil('the status counts every event', 300_000, async () => {
      counted = (await status()).violations ?? 0;
      return counted >= sent;
    }).then(() => Date.now(), () => Date.now());
    await new Promise((resolve) => setTimeout(resolve, 3000));
    counted = (await status()).violations ?? 0;
    clearInterval(watcher);

    const seconds = (caughtUp - started) / 1000;
    const lags = probes.filter((p) => p.seenAt).map((p) => ((p.seenAt ?? 0) - p.sentAt) / 1000).sort((a, b) => a - b);
    const p99 = lags.length ? (lags[Math.min(lags.length - 1, Math.ceil(lags.length * 0.99) - 1)] ?? 0) : Infinity;
    const lost = Math.max(0, sent - counted);
    const dup = Math.max(0, counted - sent);
    console.log(`bench:pipeline: ${AGENTS} agents, ${SECONDS} s of ${PER_BATCH}-event batches: sent ${sent} events; all acked after ${((ackedAt - started) / 1000).toFixed(1)} s (${Math.round(sent / ((ackedAt - started) / 1000))} ev/s into JetStream); status counted ${counted} after ${seconds.toFixed(1)} s`);
    console.log(`bench:pipeline: status lag of ${lags.length}/${probes.length} probes: p50 ${(lags[Math.floor(lags.length / 2)] ?? 0).toFixed(2)} s, p99 ${p99.toFixed(2)} s, max ${(lags.at(-1) ?? 0).toFixed(2)} s`);
    console.log(`bench:pipeline events_per_s=${Math.round(sent / seconds)} lost=${lost} dup=${dup} p99_status_lag_s=${p99.toFixed(2)}`);
    // A count that is not exact is a defect, not a figure: the run fails.
    if (lost || dup) process.exitCode = 1;
  } finally {
    for (const c of clients) await c.stop();
    for (const s of services) await s.stop();
    await Promise.all([cluster.stop(), nats.stop()]);
  }
}

/** True once something accepts TCP connections on 127.0.0.1:port. */
async function listening(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => { resolve(false); });
  });
}

await main();
