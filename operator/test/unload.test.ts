// A deleted IrqTrace's finalizer means "unloaded" (a real kube-apiserver,
// nats-server, ingest and controller; the node's agent is the real agent
// transport, scripted to say when it applied a config, as the agent does once
// its kernel side runs the new config). The trace stays, its Ready condition
// naming the node, until the node's agent reports a config without it; an
// agent that never confirms holds it for the timeout only, then a Warning
// Event names it. An agent that is gone did not unload (a module outlives its
// agent): its node holds the trace until an agent on it reports, or the node
// leaves the cluster; an agent whose unload failed is named with the error.
import * as k8s from '@kubernetes/client-node';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irqtrace, toBigInt, toLong } from '@irqtrace/proto';
import { IngestClient, Outbox } from '@irqtrace/agent';
import { FINALIZER, TraceController } from '../src/controller/controller.js';
import { APPLIED_BUCKET, AppliedConfigReader, AppliedConfigWriter } from '../src/ingest/applied.js';
import { ClusterNodeConfigs } from '../src/ingest/node_configs.js';
import { IngestMetrics } from '../src/ingest/metrics.js';
import { StreamPublisher } from '../src/ingest/publisher.js';
import { IngestServer } from '../src/ingest/server.js';
import { waitUntil } from '../../test/lib/wait.js';
import { installIrqTraceApi } from '../../test/lib/irqtrace_api.js';
import { startCluster } from '../../test/cluster/cluster.js';
import type { Cluster } from '../../test/cluster/cluster.js';
import { startNats } from '../../test/nats/nats.js';
import type { Nats } from '../../test/nats/nats.js';

const v1 = irqtrace.v1;
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const UNLOAD_TIMEOUT_MS = 8000;

let cluster: Cluster;
let nats: Nats;
let kc: k8s.KubeConfig;
const stops: (() => Promise<void>)[] = [];
let ingestPort = 0;

interface Trace {
  metadata: { finalizers?: string[]; deletionTimestamp?: string; generation?: number };
  status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
}

const trace = async (name: string): Promise<Trace | undefined> => {
  const r = await cluster.kubectl(['get', 'irqtrace', name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as Trace) : undefined;
};
const ready = (t: Trace | undefined) => t?.status?.conditions?.find((c) => c.type === 'Ready');
const apply = (name: string) => cluster.kubectl(['apply', '-f', '-'], `apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: ${name}\nspec:\n  target: {all: true}\n`);

/** The node's agent transport; apply() reports the last config received as applied, as the agent does. */
function agent(node: string) {
  const outbox = new Outbox();
  const configs: irqtrace.v1.INodeConfig[] = [];
  const client = new IngestClient({ address: `127.0.0.1:${ingestPort}`, outbox, hello: () => ({ node, bootId: 'b1', lastAckedSeq: toLong(outbox.ackedSeq), protocolVersion: 1 }), onConfig: (c) => configs.push(c), heartbeatMs: 300, log });
  client.start();
  const traces = () => (configs.at(-1)?.traces ?? []).map((t) => t.name).sort();
  return {
    client,
    traces,
    configured: () => configs.length > 0,
    apply: () => {
      client.sendState({ phase: v1.BackendState.Phase.PHASE_RUNNING, backend: v1.Backend.BACKEND_KMOD, configVersion: toLong(toBigInt(configs.at(-1)?.version)) });
    },
    /** Stops as the agent does on SIGTERM: its kernel side stopped, it says IDLE (with the version it last applied), then its stream ends. */
    stopCleanly: async () => {
      client.sendState({ phase: v1.BackendState.Phase.PHASE_IDLE, reason: 'agent stopped', configVersion: toLong(toBigInt(configs.at(-2)?.version)) });
      await new Promise((resolve) => setTimeout(resolve, 200));
      await client.stop();
    },
    /** The last config's unload failed, as the agent says it: the version still running is the one before. */
    unloadFailed: (reason: string) => {
      client.sendState({ phase: v1.BackendState.Phase.PHASE_FAILED, reason, configVersion: toLong(toBigInt(configs.at(-2)?.version)) });
    },
  };
}

beforeAll(async () => {
  [cluster, nats] = await Promise.all([startCluster({ controllerManager: false }), startNats()]);
  kc = new k8s.KubeConfig();
  kc.loadFromString(cluster.kubeconfig);
  await installIrqTraceApi(cluster);
  await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n');
  const publisher = await StreamPublisher.connect(nats.url, {}, log);
  const configs = new ClusterNodeConfigs(kc, log);
  await configs.start();
  const server = new IngestServer({ publisher, configs, pods: { lookup: () => undefined }, metrics: new IngestMetrics(), log, name: 'ingest-0', applied: new AppliedConfigWriter(publisher.nc, log) });
  ingestPort = await server.listen('127.0.0.1', 0);
  const applied = await AppliedConfigReader.connect(nats.url, log);
  const controller = new TraceController({ kubeConfig: kc, agents: { namespace: 'irqtrace-system', image: 'irqtrace/agent:test', ingestAddress: 'unused:1' }, log, applied, unloadTimeoutMs: UNLOAD_TIMEOUT_MS });
  await controller.start();
  stops.push(() => controller.stop(), () => applied.stop(), () => server.close(), () => configs.stop(), () => publisher.close());
});

afterAll(async () => {
  for (const stop of stops) await stop();
  await Promise.all([cluster.stop(), nats.stop()]);
});

describe('a deleted trace', () => {
  it('is held until the node that ran it applies a config without it', async () => {
    await apply('held');
    const n1 = agent('n1');
    try {
      await waitUntil('the trace on n1, with its finalizer', 15_000, async () => n1.traces().includes('held') && ((await trace('held'))?.metadata.finalizers?.includes(FINALIZER) ?? false));
      n1.apply();
      await cluster.kubectl(['delete', 'irqtrace', 'held', '--wait=false']);
      await waitUntil('n1 sent a config without it', 15_000, async () => Promise.resolve(!n1.traces().includes('held')));
      await waitUntil('the wait said', 15_000, async () => ready(await trace('held'))?.reason === 'Unloading');
      const waiting = await trace('held');
      expect(ready(waiting)?.message).toBe('waiting for 1 node to apply a config without the trace: n1');
      // The controller's other fields stay while it waits (its apply of the condition alone dropped them).
      // (Deleting a custom resource bumps its generation.)
      expect(waiting?.status).toMatchObject({ targetSummary: 'all', nodesTargeted: 1, observedGeneration: waiting?.metadata.generation });
      await new Promise((resolve) => setTimeout(resolve, 2000));
      expect((await trace('held'))?.metadata.deletionTimestamp).toBeDefined();
      // The agent's kernel side now runs the new config: released.
      n1.apply();
      await waitUntil('released once n1 applied it', 15_000, async () => (await trace('held')) === undefined);
    } finally {
      await n1.client.stop();
    }
  });

  it('whose node never confirms is released at the timeout, with a Warning naming it', async () => {
    await apply('stuck');
    const n1 = agent('n1');
    try {
      await waitUntil('the trace on n1', 15_000, async () => Promise.resolve(n1.traces().includes('stuck')));
      n1.apply();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const deleted = Date.now();
      await cluster.kubectl(['delete', 'irqtrace', 'stuck', '--wait=false']);
      await waitUntil('released at the timeout', UNLOAD_TIMEOUT_MS + 15_000, async () => (await trace('stuck')) === undefined);
      expect(Date.now() - deleted).toBeGreaterThanOrEqual(UNLOAD_TIMEOUT_MS - 1000);
      const events = await cluster.kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', 'regarding.name=stuck,reason=UnloadNotConfirmed', '-o', 'jsonpath={.items[*].note}']);
      expect(events.stdout).toBe('1 node did not confirm within 8s that they stopped tracing it: n1; released anyway');
    } finally {
      await n1.client.stop();
    }
  });

  // Issue 29, item 2: a killed agent counted as gone, and its trace was released although its
  // kernel side had not unloaded (the landed controller released at once).
  it('whose node\'s agent is gone waits for an agent on that node: gone is not unloaded', async () => {
    await apply('orphan');
    const n1 = agent('n1');
    await waitUntil('the trace on n1', 15_000, async () => Promise.resolve(n1.traces().includes('orphan')));
    n1.apply();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await n1.client.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await cluster.kubectl(['delete', 'irqtrace', 'orphan', '--wait=false']);
    await waitUntil('the wait said', 15_000, async () => ready(await trace('orphan'))?.reason === 'Unloading');
    expect(ready(await trace('orphan'))?.message).toBe('waiting for 1 node to apply a config without the trace: n1 (agent gone: its kernel side may still run it)');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect((await trace('orphan'))?.metadata.deletionTimestamp).toBeDefined();
    // The agent comes back (its pod restarted), is sent a config without the trace, unloads, says so.
    const again = agent('n1');
    try {
      await waitUntil('the new agent configured', 15_000, async () => Promise.resolve(again.configured()));
      expect(again.traces()).not.toContain('orphan');
      again.apply();
      await waitUntil('released once the new agent applied it', 15_000, async () => (await trace('orphan')) === undefined);
    } finally {
      await again.client.stop();
    }
  });

  // A clean stop (the DaemonSet deleted with the last trace: SIGTERM) unloads on the way out, and
  // may come before the agent applied the config without the trace: its IDLE says nothing runs.
  it('whose node\'s agent stopped cleanly before applying the new config is released at once', async () => {
    await apply('tidy');
    const n1 = agent('n1');
    await waitUntil('the trace on n1', 15_000, async () => Promise.resolve(n1.traces().includes('tidy')));
    n1.apply();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const deleted = Date.now();
    await cluster.kubectl(['delete', 'irqtrace', 'tidy', '--wait=false']);
    await waitUntil('n1 sent a config without it', 15_000, async () => Promise.resolve(!n1.traces().includes('tidy')));
    await n1.stopCleanly();
    await waitUntil('released', 15_000, async () => (await trace('tidy')) === undefined);
    expect(Date.now() - deleted).toBeLessThan(UNLOAD_TIMEOUT_MS - 2000);
    const events = await cluster.kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', 'regarding.name=tidy,reason=UnloadNotConfirmed', '-o', 'name']);
    expect(events.stdout.trim()).toBe('');
  });

  it('whose node\'s unload failed is held naming the node and the error, until it succeeds', async () => {
    await apply('busy');
    const n1 = agent('n1');
    try {
      await waitUntil('the trace on n1', 15_000, async () => Promise.resolve(n1.traces().includes('busy')));
      n1.apply();
      await cluster.kubectl(['delete', 'irqtrace', 'busy', '--wait=false']);
      await waitUntil('n1 sent a config without it', 15_000, async () => Promise.resolve(!n1.traces().includes('busy')));
      n1.unloadFailed('unloading: rmmod irqtrace: ERROR: Module irqtrace is in use');
      await waitUntil('the failure said', 15_000, async () => (ready(await trace('busy'))?.message ?? '').includes('in use'));
      expect(ready(await trace('busy'))).toMatchObject({ reason: 'Unloading', message: 'waiting for 1 node to apply a config without the trace: n1 (unloading: rmmod irqtrace: ERROR: Module irqtrace is in use)' });
      // The agent's retry succeeds.
      n1.apply();
      await waitUntil('released', 15_000, async () => (await trace('busy')) === undefined);
    } finally {
      await n1.client.stop();
    }
  });

  // Issue 29, item 1: the entry of an ingest that died said "connected" for ever. It now turns
  // stale, and its node is named as gone (not unloaded, item 2) until the node leaves the cluster.
  it('whose node\'s ingest died names the node as gone once that ingest stops refreshing, and is released when the node leaves', async () => {
    await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Node\nmetadata:\n  name: n2\n');
    await apply('ghost');
    // An ingest whose agent on n2 applied the trace, then the ingest is gone: no refresh, no end of stream.
    const nc = await connect({ servers: nats.url });
    const dead = new AppliedConfigWriter(nc, log, { refreshMs: 500 });
    expect(await dead.put({ node: 'n2', bootId: 'b2', ingest: 'ingest-dead', stream: 'ingest-dead/1/1', connected: true, since: Date.now(), traces: ['ghost'] })).toBe(true);
    dead.stop();
    await nc.close();
    await cluster.kubectl(['delete', 'irqtrace', 'ghost', '--wait=false']);
    await waitUntil('n2 named as gone', 15_000, async () => ready(await trace('ghost'))?.message === 'waiting for 1 node to apply a config without the trace: n2 (agent gone: its kernel side may still run it)');
    await cluster.kubectl(['delete', 'node', 'n2']);
    await waitUntil('released', 15_000, async () => (await trace('ghost')) === undefined);
    const events = await cluster.kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', 'regarding.name=ghost,reason=UnloadNotConfirmed', '-o', 'name']);
    expect(events.stdout.trim()).toBe('');
  });

  it('keeps what a node applied although the write failed at first: the ingest writes it again', async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    const stream = `KV_${APPLIED_BUCKET}`;
    const info = await jsm.streams.info(stream);
    const writer = new AppliedConfigWriter(nc, log, { refreshMs: 300 });
    const reader = await AppliedConfigReader.connect(nats.url, log);
    try {
      // The bucket takes no write (each is over its largest message size).
      await jsm.streams.update(stream, { ...info.config, max_msg_size: 1 });
      expect(await writer.put({ node: 'n3', bootId: 'b3', ingest: 'ingest-1', stream: 'ingest-1/1/1', connected: true, since: Date.now(), traces: ['kept'] })).toBe(false);
      await jsm.streams.update(stream, { ...info.config, max_msg_size: -1 });
      await waitUntil('the entry written again', 10_000, async () => Promise.resolve(reader.get('n3')?.traces?.includes('kept') === true));
      expect(reader.stillRunning('kept', [], () => true)).toEqual([{ node: 'n3', state: 'connected' }]);
    } finally {
      await jsm.streams.update(stream, { ...info.config, max_msg_size: -1 });
      writer.stop();
      await reader.stop();
      await nc.close();
    }
  });
});
