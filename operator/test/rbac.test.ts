// The operator's RBAC (operator/src/deploy/rbac.ts) on a real API server: its
// ServiceAccount can do the operator's job — shown by running the controller,
// the ingest's informers and leader election with that account's token — and
// is refused everything else asked of it.
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rbacObjects } from '../src/deploy/rbac.js';
import { AGENT_NAME } from '../src/controller/daemonset.js';
import { TraceController } from '../src/controller/controller.js';
import { ClusterNodeConfigs } from '../src/ingest/node_configs.js';
import { PodMetadataDirectory } from '../src/ingest/pod_directory.js';
import { LeaderElector } from '../src/leader/lease.js';
import { AppliedConfigReader } from '../src/ingest/applied.js';
import { startNats } from '../../test/nats/nats.js';
import type { Nats } from '../../test/nats/nats.js';
import { waitUntil } from '../../test/lib/wait.js';
import { installIrqTraceApi } from '../../test/lib/irqtrace_api.js';
import { startCluster } from '../../test/cluster/cluster.js';
import type { Cluster } from '../../test/cluster/cluster.js';

const NS = 'irqtrace-system';
const SA = 'irqtrace-operator';
const AS = `system:serviceaccount:${NS}:${SA}`;
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });

let cluster: Cluster;
let nats: Nats;
let operatorConfig: k8s.KubeConfig;

beforeAll(async () => {
  [cluster, nats] = await Promise.all([startCluster({ controllerManager: false }), startNats()]);
  await installIrqTraceApi(cluster, NS);
  const applied = await cluster.kubectl(['apply', '-f', '-'], rbacObjects({ namespace: NS, serviceAccount: SA }).map((o) => stringify(o)).join('---\n'));
  expect(applied.stderr).toBe('');
  // The operator's own credentials: a token of its ServiceAccount.
  const token = (await cluster.kubectl(['create', 'token', SA, '-n', NS])).stdout.trim();
  expect(token).toMatch(/^ey/);
  const admin = new k8s.KubeConfig();
  admin.loadFromString(cluster.kubeconfig);
  operatorConfig = new k8s.KubeConfig();
  operatorConfig.loadFromOptions({
    clusters: admin.clusters,
    users: [{ name: SA, token }],
    contexts: [{ name: SA, cluster: admin.getCurrentCluster()?.name ?? '', user: SA }],
    currentContext: SA,
  });
});

afterAll(async () => {
  await Promise.all([cluster.stop(), nats.stop()]);
});

async function can(verb: string, resource: string, namespace?: string): Promise<boolean> {
  const r = await cluster.kubectl(['auth', 'can-i', verb, resource, `--as=${AS}`, ...(namespace ? ['-n', namespace] : [])]);
  return r.stdout.trim() === 'yes';
}

describe("the operator's RBAC", () => {
  it('allows its job and refuses the rest', async () => {
    const allowed: [string, string, string?][] = [
      ['watch', 'irqtraces.irqtrace.io'],
      ['patch', 'irqtraces.irqtrace.io/status'],
      ['list', 'nodes'],
      ['watch', 'pods'],
      ['create', 'daemonsets.apps', NS],
      ['delete', 'daemonsets.apps', NS],
      ['update', 'leases.coordination.k8s.io', NS],
      ['create', 'events.events.k8s.io', 'default'],
      // Its own namespace's Pod Security label, and no other namespace.
      ['patch', `namespaces/${NS}`],
    ];
    const refused: [string, string, string?][] = [
      ['create', 'irqtraces.irqtrace.io'],
      ['delete', 'irqtraces.irqtrace.io'],
      ['get', 'secrets', NS],
      ['list', 'secrets', 'kube-system'],
      ['get', 'pods', 'shop'],
      ['create', 'pods', NS],
      ['patch', 'nodes'],
      ['create', 'daemonsets.apps', 'kube-system'],
      ['update', 'leases.coordination.k8s.io', 'kube-system'],
      ['create', 'clusterrolebindings.rbac.authorization.k8s.io'],
      ['create', 'events.events.k8s.io', NS],
      ['create', 'serviceaccounts/token', NS],
      ['patch', 'namespaces/kube-system'],
      ['delete', `namespaces/${NS}`],
    ];
    const wrong: string[] = [];
    for (const [verb, resource, ns] of allowed) if (!(await can(verb, resource, ns))) wrong.push(`refused: ${verb} ${resource} ${ns ?? ''}`);
    for (const [verb, resource, ns] of refused) if (await can(verb, resource, ns)) wrong.push(`allowed: ${verb} ${resource} ${ns ?? ''}`);
    expect(wrong).toEqual([]);
    // The agents' account can do nothing at all.
    const agent = await cluster.kubectl(['auth', 'can-i', '--list', `--as=system:serviceaccount:${NS}:irqtrace-agent`]);
    expect(agent.stdout).not.toMatch(/irqtraces|nodes|pods|daemonsets|secrets/);
  });

  it('is enough to run the controller, the ingest informers and leader election as the operator', async () => {
    const events: string[] = [];
    const elector = new LeaderElector(operatorConfig, { namespace: NS, name: 'irqtrace-operator', identity: 'op-0', retryPeriodMs: 300, log, onStartedLeading: () => events.push('leads'), onStoppedLeading: () => events.push('stops') });
    elector.start();
    await waitUntil('leading with the operator account', 10_000, async () => Promise.resolve(elector.isLeader));
    const applied = await AppliedConfigReader.connect(nats.url, log);
    const controller = new TraceController({ kubeConfig: operatorConfig, agents: { namespace: NS, image: 'irqtrace/agent:test', ingestAddress: 'irqtrace-ingest:9443' }, log, applied });
    const configs = new ClusterNodeConfigs(operatorConfig, log);
    const pods = new PodMetadataDirectory(operatorConfig, log);
    await Promise.all([controller.start(), configs.start(), pods.start()]);
    try {
      await cluster.kubectl(['apply', '-f', '-'], 'apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: rbac\nspec:\n  target: {all: true}\n');
      await waitUntil('the DaemonSet made by the operator account', 20_000, async () => (await cluster.kubectl(['get', 'daemonset', '-n', NS, AGENT_NAME])).code === 0);
      await waitUntil('finalizer and status by the operator account', 20_000, async () => {
        const t = JSON.parse((await cluster.kubectl(['get', 'irqtrace', 'rbac', '-o', 'json'])).stdout) as { metadata: { finalizers?: string[] }; status?: { observedGeneration?: number } };
        return (t.metadata.finalizers?.length ?? 0) > 0 && t.status?.observedGeneration === 1;
      });
      // Before its first DaemonSet, the namespace was labelled so Pod Security admits the privileged agents.
      const enforce = await cluster.kubectl(['get', 'namespace', NS, '-o', 'jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}']);
      expect(enforce.stdout).toBe('privileged');
      expect(configs.tracesFor('any-node').map((t) => t.name)).toEqual(['rbac']);
      const reasons = await cluster.kubectl(['get', 'events.events.k8s.io', '-n', 'default', '-o', 'jsonpath={.items[*].reason}']);
      expect(reasons.stdout).toContain('NoNodesMatch');
      await cluster.kubectl(['delete', 'irqtrace', 'rbac']);
      await waitUntil('the DaemonSet deleted by the operator account', 20_000, async () => (await cluster.kubectl(['get', 'daemonset', '-n', NS, AGENT_NAME])).code !== 0);
      expect(controller.lastError).toBeUndefined();
    } finally {
      await Promise.all([controller.stop(), configs.stop(), pods.stop(), elector.stop()]);
      await applied.stop();
    }
    expect(events).toEqual(['leads', 'stops']);
  });
});
