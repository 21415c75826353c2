// Leadership lost while the leader roles are still starting (a real
// kube-apiserver, nats-server and Lease). Replica a wins the lease, but its
// status aggregator reaches NATS only after a delay (a loopback proxy that
// holds connections); meanwhile replica b takes the lease. a must stop: no
// status written by it, isLeader() false, its leader gauge 0, within one lease
// period, and it must not come back when its start-up finally completes.
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irqtrace, toLong } from '@irqtrace/proto';
import { parseOperatorConfig } from '../src/config.js';
import { runOperator } from '../src/run.js';
import type { RunningOperator } from '../src/run.js';
import { STREAM, SUBJECT_ROOT, subject } from '../src/ingest/subjects.js';
import { freePort } from '../../test/lib/ports.js';
import { waitUntil } from '../../test/lib/wait.js';
import { installIrqTraceApi } from '../../test/lib/irqtrace_api.js';
import { startCluster } from '../../test/cluster/cluster.js';
import type { Cluster } from '../../test/cluster/cluster.js';
import { startNats } from '../../test/nats/nats.js';
import type { Nats } from '../../test/nats/nats.js';

const v1 = irqtrace.v1;
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const LEASE = { leaseDurationSeconds: 4, renewDeadlineSeconds: 3, retryPeriodSeconds: 0.5 };
/** How long a's NATS connections are held before they lead anywhere: its start-up window. */
const HOLD_MS = 12_000;

let cluster: Cluster;
let nats: Nats;
let kc: k8s.KubeConfig;
let proxy: Server;
let proxyPort = 0;
const sockets = new Set<Socket>();

beforeAll(async () => {
  [cluster, nats] = await Promise.all([startCluster({ controllerManager: false }), startNats()]);
  kc = new k8s.KubeConfig();
  kc.loadFromString(cluster.kubeconfig);
  await installIrqTraceApi(cluster);
  await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: latency\nspec:\n  target: {all: true}\n');
  proxyPort = await freePort();
  proxy = createServer((client) => {
    sockets.add(client);
    client.pause();
    setTimeout(() => {
      const upstream = createConnection({ host: '127.0.0.1', port: nats.port });
      sockets.add(upstream);
      client.pipe(upstream).pipe(client);
      client.resume();
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    }, HOLD_MS);
  });
  await new Promise<void>((resolve) => proxy.listen(proxyPort, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  proxy.close();
  await Promise.all([cluster.stop(), nats.stop()]);
});

function config(roles: string[], servers: string): ReturnType<typeof parseOperatorConfig> {
  return parseOperatorConfig(JSON.stringify({
    roles,
    leaderElection: { enabled: true, leaseName: 'irqtrace-operator', ...LEASE },
    nats: { servers: [servers] },
    metrics: { listen: '127.0.0.1:0' },
    statusIntervalMs: 200,
  }));
}

const leases = () => kc.makeApiClient(k8s.CoordinationV1Api);
const holder = async (): Promise<string | undefined> => {
  try {
    return (await leases().readNamespacedLease({ name: 'irqtrace-operator', namespace: 'irqtrace-system' })).spec?.holderIdentity;
  } catch {
    return undefined;
  }
};
const leaderGauge = async (o: RunningOperator): Promise<string | undefined> => /^irqtrace_operator_leader (\d)$/m.exec(await (await fetch(`http://127.0.0.1:${o.metricsPort}/metrics`)).text())?.[1];

describe('leadership lost during the leader roles\' start-up', () => {
  it('stops the replica that lost it: it writes no status and does not lead', async () => {
    // The stream exists and holds an event: any aggregator that runs counts it into the status.
    const nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).streams.add({ name: STREAM, subjects: [`${SUBJECT_ROOT}.>`] });
    await jetstream(nc).publish(subject('latency', 'node-1', 'events'), v1.NodeBatch.encode({ node: 'node-1', bootId: 'b', seq: toLong(1n), trace: 'latency', events: [{ durationNs: toLong(2_000_000n) }] }).finish());
    await nc.close();

    const a = await runOperator(config(['status'], `nats://127.0.0.1:${proxyPort}`), kc, log, { identity: 'a' });
    let b: RunningOperator | undefined;
    try {
      await waitUntil('a holds the lease', 15_000, async () => (await holder()) === 'a');
      expect(a.isLeader()).toBe(false);
      // b takes the lease while a's aggregator is still connecting, and keeps renewing it.
      const lease = await leases().readNamespacedLease({ name: 'irqtrace-operator', namespace: 'irqtrace-system' });
      const takenAt = Date.now();
      if (!lease.spec) throw new Error('the lease has no spec');
      lease.spec.holderIdentity = 'b';
      lease.spec.renewTime = new k8s.V1MicroTime();
      lease.spec.leaseTransitions = (lease.spec.leaseTransitions ?? 0) + 1;
      await leases().replaceNamespacedLease({ name: 'irqtrace-operator', namespace: 'irqtrace-system', body: lease });
      b = await runOperator(config(['controller'], nats.url), kc, log, { identity: 'b' });
      await waitUntil('b leads', 15_000, async () => Promise.resolve(b?.isLeader() === true));
      expect(await holder()).toBe('b');

      // a's start-up completes after the hold, long after it lost the lease: it must not run.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, takenAt + HOLD_MS + 3000 - Date.now())));
      expect(Date.now() - takenAt).toBeGreaterThan(HOLD_MS);
      expect(a.isLeader()).toBe(false);
      expect(await leaderGauge(a)).toBe('0');
      const status = await cluster.kubectl(['get', 'irqtrace', 'latency', '-o', 'jsonpath={.status.violations}']);
      expect(status.stdout).toBe('');
      expect(await holder()).toBe('b');
    } finally {
      await a.stop();
      await b?.stop();
    }
  });
});

describe('leader roles that cannot start', () => {
  // Issue 29, item 7: runOperator called process.exit(1) itself, so a library caller (a test, an
  // embedding process) died with it; the error is the caller's to handle.
  it("settle the operator's failed promise with the error, and the process lives", async () => {
    const closedPort = await freePort();
    const c = config(['status'], `nats://127.0.0.1:${closedPort}`);
    const o = await runOperator({ ...c, leaderElection: { ...c.leaderElection, enabled: false } }, kc, log, { identity: 'c' });
    try {
      const err = await Promise.race([o.failed, new Promise<undefined>((resolve) => setTimeout(resolve, 30_000, undefined))]);
      expect(err?.message).toMatch(/CONNECTION_REFUSED|ECONNREFUSED|connect/i);
      expect(o.isLeader()).toBe(false);
    } finally {
      await o.stop();
    }
  });
});
