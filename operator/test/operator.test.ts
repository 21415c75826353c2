// The built `irqtrace-operator` program: two replicas with every role against
// a real kube-apiserver and nats-server. One leads; both ingest; an agent on
// either gets its config and its events reach the IrqTrace's status; the
// leader's SIGTERM hands over; a bad config is refused naming the field.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irqtrace, toLong } from '@irqtrace/proto';
import { IngestClient, Outbox } from '@irqtrace/agent';
import { operatorMain, scratchDir } from '../../test/lib/paths.js';
import { freePort } from '../../test/lib/ports.js';
import { Service, run } from '../../test/lib/process.js';
import { waitUntil } from '../../test/lib/wait.js';
import { installIrqTraceApi } from '../../test/lib/irqtrace_api.js';
import { startCluster } from '../../test/cluster/cluster.js';
import type { Cluster } from '../../test/cluster/cluster.js';
import { startNats } from '../../test/nats/nats.js';
import type { Nats } from '../../test/nats/nats.js';

const v1 = irqtrace.v1;
const log = pino({ level: 'silent' });

let cluster: Cluster;
let nats: Nats;
const work = scratchDir('operator');

interface Replica {
  service: Service;
  ingestPort: number;
  metricsPort: number;
}

async function startReplica(name: string): Promise<Replica> {
  const [ingestPort, metricsPort] = [await freePort(), await freePort()];
  const config = join(work, `${name}.yaml`);
  writeFileSync(config, [
    'namespace: irqtrace-system',
    `nats: {servers: ["${nats.url}"], maxAgeHours: 1, maxBytes: 67108864}`,
    `ingest: {listen: "127.0.0.1:${ingestPort}"}`,
    `metrics: {listen: "127.0.0.1:${metricsPort}"}`,
    'statusIntervalMs: 300',
    '',
  ].join('\n'));
  const service = new Service(`operator-${name}`, process.execPath, [operatorMain, 'run', '--config', config, '--kubeconfig', cluster.kubeconfigPath], join(work, `${name}.log`), { env: { ...process.env, POD_NAME: name, LOG_LEVEL: 'info' } });
  await service.waitForOutput(/ingest listening/, 30_000);
  return { service, ingestPort, metricsPort };
}

const metrics = async (r: Replica) => (await fetch(`http://127.0.0.1:${r.metricsPort}/metrics`)).text();
/** Watches of a resource open on the API server now (its apiserver_longrunning_requests). */
const watches = async (resource: string): Promise<number> => {
  const text = (await cluster.kubectl(['get', '--raw', '/metrics'])).stdout;
  return [...text.matchAll(/^apiserver_longrunning_requests\{([^}]*)\} (\d+)$/gm)]
    .filter(([, labels]) => labels?.includes(`resource="${resource}"`) && labels.includes('verb="WATCH"'))
    .reduce((n, [, , count]) => n + Number(count), 0);
};
const leads = async (r: Replica) => /^irqtrace_operator_leader 1$/m.test(await metrics(r));

beforeAll(async () => {
  [cluster, nats] = await Promise.all([startCluster({ controllerManager: false }), startNats()]);
  await installIrqTraceApi(cluster);
});

afterAll(async () => {
  await Promise.all([cluster.stop(), nats.stop()]);
});

describe('irqtrace-operator', () => {
  it('refuses a bad config, naming the field', async () => {
    const bad = join(work, 'bad.yaml');
    writeFileSync(bad, 'roles: [controller, dance]\n');
    const r = await run(process.execPath, [operatorMain, 'run', '--config', bad, '--kubeconfig', cluster.kubeconfigPath]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('roles[1]: Expected union value');
  });

  it('runs two replicas: one leader, both ingesting, status from the stream, handover on SIGTERM', async () => {
    const before = { irqtraces: await watches('irqtraces'), nodes: await watches('nodes') };
    const a = await startReplica('a');
    const b = await startReplica('b');
    try {
      await waitUntil('one leader', 20_000, async () => (await leads(a)) !== (await leads(b)));
      const [leader, standby] = (await leads(a)) ? [a, b] : [b, a];
      // Each replica watches IrqTraces and Nodes once, whatever roles it runs (one shared informer set).
      const opened = async () => ({ irqtraces: (await watches('irqtraces')) - before.irqtraces, nodes: (await watches('nodes')) - before.nodes });
      await waitUntil('both replicas watching', 20_000, async () => (await opened()).irqtraces >= 2 && (await opened()).nodes >= 2);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(await opened()).toEqual({ irqtraces: 2, nodes: 2 });
      expect(await (await fetch(`http://127.0.0.1:${standby.metricsPort}/readyz`)).text()).toBe('ready\n');

      await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: fleet\nspec:\n  target: {all: true}\n');
      // An agent on the standby's ingest: configs and events do not depend on leadership.
      const outbox = new Outbox();
      const seen: irqtrace.v1.INodeConfig[] = [];
      const client = new IngestClient({ address: `127.0.0.1:${standby.ingestPort}`, outbox, hello: () => ({ node: 'edge-1', bootId: 'b', lastAckedSeq: toLong(outbox.ackedSeq), protocolVersion: 1 }), onConfig: (c) => seen.push(c), heartbeatMs: 300, log });
      client.start();
      try {
        await waitUntil('the config', 15_000, async () => Promise.resolve(seen.at(-1)?.traces?.[0]?.name === 'fleet'));
        outbox.add(v1.EventBatch.create({ seq: toLong(1n), events: [{ kind: v1.SectionKind.SECTION_KIND_IRQS_OFF, durationNs: toLong(2_345_000n), task: { pid: 7, comm: 'dd' }, traces: ['fleet'] }] }));
        client.pump();
        const violations = async () => (await cluster.kubectl(['get', 'irqtrace', 'fleet', '-o', 'jsonpath={.status.violations}'])).stdout;
        await waitUntil('the status from the leader', 20_000, async () => (await violations()) === '1');

        // The leader goes; the standby takes over (the Lease is released) and keeps the status going.
        await leader.service.stop();
        await waitUntil('the standby leads', 20_000, async () => leads(standby));
        outbox.add(v1.EventBatch.create({ seq: toLong(2n), events: [{ kind: v1.SectionKind.SECTION_KIND_IRQS_OFF, durationNs: toLong(3_000_000n), task: { pid: 8, comm: 'fio' }, traces: ['fleet'] }] }));
        client.pump();
        await waitUntil('the status from the new leader', 20_000, async () => (await violations()) === '2');
        expect(await metrics(standby)).toMatch(/^irqtrace_violations\{trace="fleet",node="edge-1"\} 2$/m);
        expect(await metrics(standby)).toMatch(/^irqtrace_ingest_agents_connected 1$/m);
      } finally {
        await client.stop();
      }
    } finally {
      await Promise.all([a.service.stop(), b.service.stop()]);
    }
  });
});
