// The pipeline from simulated agents to an IrqTrace's status, all real past
// the agents: N agents (the real transport: IngestClient + Outbox, 100-event
// batches with 8-frame stacks) streaming as fast as they are acked into the
// real `irqtrace-operator` — one process with the ingest role, one with the
// controller and status aggregator — through a real nats-server (JetStream),
// into the status on a real kube-apiserver. `npm run bench:pipeline` measures
// it; `npm run soak:pipeline` and operator/test/storm.test.ts break it while it runs.
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
import type { Cluster } from '../cluster/cluster.js';
import { startNats } from '../nats/nats.js';
import type { Nats } from '../nats/nats.js';

const v1 = irqtrace.v1;
export const PER_BATCH = 100;
export const TRACE = 'bench';

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
    traces: [TRACE],
  }));
  // Field 3 (events) of EventBatch, repeated: a batch is its seq then these bytes.
  return v1.EventBatch.encode({ events }).finish();
}

function batchBytes(seq: bigint, events: Uint8Array): Uint8Array {
  const head = v1.EventBatch.encode({ seq: toLong(seq) }).finish();
  const out = new Uint8Array(head.length + events.length);
  out.set(head);
  out.set(events, head.length);
  return out;
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

export interface SimulatedAgent {
  outbox: Outbox;
  client: IngestClient;
  events: Uint8Array;
  /** Events put in its outbox (each is sent until acked). */
  sent: number;
}

export type Role = 'ingest' | 'leader';

export class PipelineRig {
  readonly agents: SimulatedAgent[] = [];
  private readonly services = new Map<Role, Service>();
  private readonly clients: IngestClient[] = [];
  private readonly custom: k8s.CustomObjectsApi;
  private starts = 0;

  private constructor(
    readonly cluster: Cluster,
    readonly nats: Nats,
    readonly work: string,
    readonly ingestPort: number,
    private readonly configs: Map<Role, string>,
  ) {
    const kc = new k8s.KubeConfig();
    kc.loadFromString(cluster.kubeconfig);
    this.custom = kc.makeApiClient(k8s.CustomObjectsApi);
  }

  /** The control plane, NATS, the trace, and the operator's two processes (not yet the agents). */
  static async start(name: string): Promise<PipelineRig> {
    const work = scratchDir(name);
    const [cluster, nats] = await Promise.all([startCluster({ controllerManager: false }), startNats()]);
    try {
      await installIrqTraceApi(cluster);
      await cluster.kubectl(['apply', '-f', '-'], `apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: ${TRACE}\nspec:\n  target: {all: true}\n  threshold: 500us\n`);
      const ingestPort = await freePort();
      const configs = new Map<Role, string>();
      for (const [role, roles] of [['ingest', 'ingest'], ['leader', 'controller, status']] as const) {
        const config = join(work, `${role}.yaml`);
        writeFileSync(config, `roles: [${roles}]\nleaderElection: {enabled: false}\nnats: {servers: ["${nats.url}"], maxAgeHours: 1, maxBytes: 4294967296}\ningest: {listen: "127.0.0.1:${ingestPort}", maxPendingPerAgent: 64}\nmetrics: {listen: "127.0.0.1:${await freePort()}"}\nstatusIntervalMs: 1000\n`);
        configs.set(role, config);
      }
      const rig = new PipelineRig(cluster, nats, work, ingestPort, configs);
      rig.run('ingest');
      rig.run('leader');
      await waitUntil('the ingest listening', 30_000, () => listening(ingestPort));
      return rig;
    } catch (err) {
      await Promise.all([cluster.stop(), nats.stop()]);
      throw err;
    }
  }

  /** Starts the operator process of this role (again: its log goes on in the same file). */
  run(role: Role): Service {
    // BENCH_OPERATOR_FLAGS: node flags for the operator processes (e.g. --cpu-prof).
    const flags = (process.env.BENCH_OPERATOR_FLAGS ?? '').split(' ').filter(Boolean);
    const s = new Service(`${role}-${++this.starts}`, process.execPath, [...flags, '--max-old-space-size=2048', operatorMain, 'run', '--config', this.configs.get(role) ?? '', '--kubeconfig', this.cluster.kubeconfigPath], join(this.work, `${role}.log`), {
      env: { ...process.env, LOG_LEVEL: 'warn' },
    });
    this.services.set(role, s);
    return s;
  }

  /** SIGKILL, as the OOM killer or a node failure does: nothing is flushed or handed over. */
  async kill(role: Role): Promise<void> {
    const s = this.services.get(role);
    if (!s) return;
    s.child.kill('SIGKILL');
    await s.exit();
  }

  async ingestListening(): Promise<void> {
    await waitUntil('the ingest listening', 30_000, () => listening(this.ingestPort));
  }

  /** n agents named node-<i>, connected; window: batches each has in flight. */
  async connectAgents(n: number, window: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const outbox = new Outbox({ maxBytes: 256 << 20 });
      const client = new IngestClient({ address: `127.0.0.1:${this.ingestPort}`, outbox, hello: () => ({ node: `node-${i}`, bootId: 'b', lastAckedSeq: toLong(outbox.ackedSeq), protocolVersion: 1 }), window, heartbeatMs: 5000 });
      this.clients.push(client);
      this.agents.push({ outbox, client, events: eventsBytes(i), sent: 0 });
      client.start();
    }
    await waitUntil('every agent connected', 60_000, async () => Promise.resolve(this.agents.every((a) => a.client.connected)));
  }

  /** Another agent of the rig's (e.g. a probe), stopped with the rest. */
  client(options: ConstructorParameters<typeof IngestClient>[0]): IngestClient {
    const client = new IngestClient(options);
    this.clients.push(client);
    return client;
  }

  /** Keeps every agent's outbox at `queued` batches until `until` (ms), as fast as acks allow. */
  async stream(until: number, queued: number): Promise<void> {
    while (Date.now() < until) {
      for (const a of this.agents) {
        while (a.outbox.size < queued) {
          const seq = a.outbox.nextSeq();
          a.outbox.addEncoded(seq, batchBytes(seq, a.events), PER_BATCH);
          a.sent += PER_BATCH;
        }
        a.client.pump();
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  get sent(): number {
    return this.agents.reduce((n, a) => n + a.sent, 0);
  }

  /** Every agent's outbox empty: all it sent is acked, so in JetStream. */
  async allAcked(timeoutMs: number, extra: () => boolean = () => true): Promise<void> {
    await waitUntil('every batch acked', timeoutMs, async () => Promise.resolve(this.agents.every((a) => a.outbox.size === 0) && extra()));
  }

  async status(): Promise<{ violations?: number; maxDurationNs?: number }> {
    const t = (await this.custom.getClusterCustomObject({ group: 'irqtrace.io', version: 'v1alpha1', plural: 'irqtraces', name: TRACE })) as { status?: { violations?: number; maxDurationNs?: number } };
    return t.status ?? {};
  }

  async stop(): Promise<void> {
    for (const c of this.clients) await c.stop();
    for (const s of this.services.values()) await s.stop();
    await Promise.all([this.cluster.stop(), this.nats.stop()]);
  }
}
