// The controller against a real kube-apiserver + controller manager: the one
// agent DaemonSet follows the IrqTraces (nodes, privileges, owners), traces
// carry a finalizer until the DaemonSet no longer has them, status and Events
// say what happened, garbage collection removes agents with the last owner,
// and leader election hands over through a real Lease.
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_NAME, EBPF_CAPABILITIES } from '../src/controller/daemonset.js';
import { FINALIZER, TraceController } from '../src/controller/controller.js';
import { LeaderElector } from '../src/leader/lease.js';
import { SharedInformers } from '../src/informers.js';
import { AppliedConfigReader } from '../src/ingest/applied.js';
import { startNats } from '../../test/nats/nats.js';
import type { Nats } from '../../test/nats/nats.js';
import { waitUntil } from '../../test/lib/wait.js';
import { installIrqTraceApi } from '../../test/lib/irqtrace_api.js';
import { startCluster } from '../../test/cluster/cluster.js';
import type { Cluster } from '../../test/cluster/cluster.js';

const NS = 'irqtrace-system';
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const agents = { namespace: NS, image: 'irqtrace/agent:test', ingestAddress: 'irqtrace-ingest.irqtrace-system.svc:9443' };

let cluster: Cluster;
let nats: Nats;
// What agents applied: no agent runs here, so a deleted trace waits for no node.
let applied: AppliedConfigReader;
let kc: k8s.KubeConfig;
let apps: k8s.AppsV1Api;
let controller: TraceController | undefined;

interface Trace {
  metadata: { name: string; finalizers?: string[]; uid: string; deletionTimestamp?: string };
  status?: { observedGeneration?: number; nodesTargeted?: number; targetSummary?: string; nodesSummary?: string; conditions?: { type: string; status: string; reason: string }[] };
}

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await cluster.kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function trace(name: string): Promise<Trace | undefined> {
  const r = await cluster.kubectl(['get', 'irqtrace', name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as Trace) : undefined;
}

async function daemonSet(): Promise<k8s.V1DaemonSet | undefined> {
  try {
    return await apps.readNamespacedDaemonSet({ name: AGENT_NAME, namespace: NS });
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) return undefined;
    throw err;
  }
}

const ready = (t: Trace | undefined) => t?.status?.conditions?.find((c) => c.type === 'Ready');
const node = (name: string, zone: string) => `apiVersion: v1\nkind: Node\nmetadata:\n  name: ${name}\n  labels: {zone: ${zone}}\n`;
const yamlTrace = (name: string, spec: string) => `apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: ${name}\nspec:\n${spec}`;

beforeAll(async () => {
  [cluster, nats] = await Promise.all([startCluster(), startNats()]);
  applied = await AppliedConfigReader.connect(nats.url, log);
  kc = new k8s.KubeConfig();
  kc.loadFromString(cluster.kubeconfig);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  await installIrqTraceApi(cluster, NS);
  await kubectl(['apply', '-f', '-'], node('n1', 'a') + '---\n' + node('n2', 'b'));
});

afterAll(async () => {
  await controller?.stop();
  await applied.stop();
  await Promise.all([cluster.stop(), nats.stop()]);
});

describe('the IrqTrace controller', () => {
  it('runs one agent DaemonSet for the traces, with the nodes, owners and privileges they need', async () => {
    controller = new TraceController({ kubeConfig: kc, agents, log, applied });
    await controller.start();

    await kubectl(['apply', '-f', '-'], yamlTrace('everywhere', '  target: {all: true}\n  threshold: 1ms\n'));
    await waitUntil('the DaemonSet for one trace', 30_000, async () => (await daemonSet())?.metadata?.ownerReferences?.length === 1);
    let ds = await daemonSet();
    const everywhere = await trace('everywhere');
    expect(ds?.metadata?.ownerReferences?.map((o) => [o.kind, o.name, o.uid])).toEqual([['IrqTrace', 'everywhere', everywhere?.metadata.uid]]);
    // Backend auto may load the module: privileged (the device cgroup); every node.
    let pod = ds?.spec?.template.spec;
    expect(pod?.containers[0]?.securityContext?.privileged).toBe(true);
    expect(pod?.affinity).toBeUndefined();
    expect(pod?.automountServiceAccountToken).toBe(false);
    expect(pod?.containers[0]?.args?.slice(0, 3)).toEqual(['agent', '--ingest', agents.ingestAddress]);
    await waitUntil('its finalizer and status', 30_000, async () => {
      const t = await trace('everywhere');
      return (t?.metadata.finalizers?.includes(FINALIZER) ?? false) && ready(t)?.status === 'True';
    });
    expect((await trace('everywhere'))?.status).toMatchObject({ observedGeneration: 1, nodesTargeted: 2, targetSummary: 'all' });
    // nodesSummary (reporting/targeted) is the status aggregator's field, not the controller's.
    expect((await trace('everywhere'))?.status?.nodesSummary).toBeUndefined();

    // A second trace, eBPF only, on zone a: both own the DaemonSet; still every node.
    await kubectl(['apply', '-f', '-'], yamlTrace('zone-a', '  nodeSelector: {matchLabels: {zone: a}}\n  target: {irqs: [24], irqNames: ["nvme0q*"]}\n  backend: ebpf\n'));
    await waitUntil('two owners', 30_000, async () => (await daemonSet())?.metadata?.ownerReferences?.length === 2);
    expect((await daemonSet())?.spec?.template.spec?.affinity).toBeUndefined();
    await waitUntil('zone-a status', 30_000, async () => ready(await trace('zone-a'))?.reason === 'AgentsScheduled');
    expect((await trace('zone-a'))?.status).toMatchObject({ nodesTargeted: 1, targetSummary: 'irq 24,nvme0q*' });

    // Deleting the first: it is released (finalizer) and gone; the agents go to zone a only, unprivileged.
    await kubectl(['delete', 'irqtrace', 'everywhere', '--wait=false']);
    await waitUntil('the deleted trace gone', 30_000, async () => (await trace('everywhere')) === undefined);
    ds = await daemonSet();
    pod = ds?.spec?.template.spec;
    expect(ds?.metadata?.ownerReferences?.map((o) => o.name)).toEqual(['zone-a']);
    expect(pod?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms).toEqual([{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }]);
    expect(pod?.containers[0]?.securityContext).toMatchObject({ privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: EBPF_CAPABILITIES } });
  });

  it('says when a trace selects no node, and follows node labels', async () => {
    await kubectl(['apply', '-f', '-'], yamlTrace('zone-z', '  nodeSelector: {matchExpressions: [{key: zone, operator: In, values: [z]}]}\n  target: {all: true}\n'));
    await waitUntil('NoNodesMatch', 30_000, async () => ready(await trace('zone-z'))?.reason === 'NoNodesMatch');
    expect(ready(await trace('zone-z'))?.status).toBe('False');
    await kubectl(['label', 'node', 'n2', 'zone=z', '--overwrite']);
    await waitUntil('ready once a node has the label', 30_000, async () => ready(await trace('zone-z'))?.reason === 'AgentsScheduled');
    expect((await trace('zone-z'))?.status?.nodesTargeted).toBe(1);
    // A spec change is observed: its generation in the status.
    await kubectl(['patch', 'irqtrace', 'zone-z', '--type=merge', '-p', '{"spec":{"threshold":"2ms"}}']);
    await waitUntil('observedGeneration 2', 30_000, async () => (await trace('zone-z'))?.status?.observedGeneration === 2);
    const events = await kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', 'regarding.name=zone-z', '-o', 'jsonpath={.items[*].reason}']);
    expect(events.split(' ').sort()).toEqual(['AgentsScheduled', 'NoNodesMatch']);
  });

  it('says exactly what to label while Pod Security would refuse the agents, and labels the namespace itself unless told not to', async () => {
    await controller?.stop();
    await kubectl(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=baseline', '--overwrite']);
    // Told not to label (agents.podSecurityLabel false): it says what to do instead.
    controller = new TraceController({ kubeConfig: kc, agents: { ...agents, podSecurityLabel: false }, log, applied });
    await controller.start();
    await kubectl(['apply', '-f', '-'], yamlTrace('psa', '  target: {all: true}\n'));
    await waitUntil('Ready=False AgentsRefused', 30_000, async () => ready(await trace('psa'))?.reason === 'AgentsRefused');
    const refused = ready(await trace('psa')) as { status: string; message?: string } | undefined;
    expect(refused?.status).toBe('False');
    expect(refused?.message).toBe(`namespace ${NS} enforces Pod Security 'baseline', which refuses the agents (host PID, host paths, privileged): kubectl label namespace ${NS} pod-security.kubernetes.io/enforce=privileged --overwrite`);
    const events = await kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', 'regarding.name=psa', '-o', 'jsonpath={.items[*].reason}']);
    expect(events.split(' ')).toContain('AgentsRefused');
    // The admin labels it: the next reconcile (here, a spec change) sees it.
    await kubectl(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=privileged', '--overwrite']);
    await kubectl(['patch', 'irqtrace', 'psa', '--type=merge', '-p', '{"spec":{"threshold":"2ms"}}']);
    await waitUntil('Ready=True once labelled', 30_000, async () => ready(await trace('psa'))?.reason === 'AgentsScheduled');
    await controller.stop();
    // By default it labels the namespace itself, before the DaemonSet.
    await kubectl(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=baseline', '--overwrite']);
    controller = new TraceController({ kubeConfig: kc, agents, log, applied });
    await controller.start();
    await waitUntil('the namespace labelled privileged', 30_000, async () =>
      (await kubectl(['get', 'namespace', NS, '-o', 'jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}'])) === 'privileged');
    expect(ready(await trace('psa'))?.reason).toBe('AgentsScheduled');
    await kubectl(['delete', 'irqtrace', 'psa']);
  });

  it('shares its informers, Nodes metadata-only (names and labels, no spec or status)', async () => {
    const informers = new SharedInformers(kc, log);
    await informers.start();
    try {
      const n1 = informers.nodes.get('n1');
      expect(n1?.metadata?.labels).toMatchObject({ zone: 'a' });
      expect(n1).not.toHaveProperty('spec');
      expect(n1).not.toHaveProperty('status');
      expect(informers.traces.list().map((t) => t.metadata.name).sort()).toEqual(['zone-a', 'zone-z']);
    } finally {
      await informers.stop();
    }
  });

  it('removes the agents with the last trace', async () => {
    await kubectl(['delete', 'irqtrace', 'zone-a', 'zone-z']);
    await waitUntil('no DaemonSet', 30_000, async () => (await daemonSet()) === undefined);
  });

  it('holds deletion until it has released the trace, and garbage collection follows the owners without it', async () => {
    await kubectl(['apply', '-f', '-'], yamlTrace('held', '  target: {all: true}\n'));
    await waitUntil('the DaemonSet and the finalizer', 30_000, async () => (await daemonSet()) !== undefined && ((await trace('held'))?.metadata.finalizers?.length ?? 0) > 0);
    await controller?.stop();
    await kubectl(['delete', 'irqtrace', 'held', '--wait=false']);
    // Without the controller, the finalizer keeps it (being deleted) ...
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect((await trace('held'))?.metadata.deletionTimestamp).toBeDefined();
    // ... until someone removes the finalizer; then the garbage collector deletes the DaemonSet it owned.
    await kubectl(['patch', 'irqtrace', 'held', '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]']);
    await waitUntil('the DaemonSet garbage-collected', 60_000, async () => (await daemonSet()) === undefined);
  });
});

describe('leader election on a Lease', () => {
  const elector = (identity: string, events: string[]) =>
    new LeaderElector(kc, {
      namespace: NS,
      name: 'irqtrace-test-leader',
      identity,
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 300,
      log,
      onStartedLeading: () => events.push(`${identity} leads`),
      onStoppedLeading: () => events.push(`${identity} stops`),
    });

  it('has one leader at a time, and hands over when it stops', async () => {
    const events: string[] = [];
    const a = elector('a', events);
    a.start();
    await waitUntil('a leads', 10_000, async () => Promise.resolve(a.isLeader));
    const b = elector('b', events);
    b.start();
    // Longer than a lease: a keeps renewing, b never gets it.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    await a.stop();
    await waitUntil('b leads', 10_000, async () => Promise.resolve(b.isLeader));
    await b.stop();
    expect(events).toEqual(['a leads', 'a stops', 'b leads', 'b stops']);
  });

  it('stopped while an attempt is under way, leads no more and leaves the lease free', async () => {
    const coordination = kc.makeApiClient(k8s.CoordinationV1Api);
    const events: string[] = [];
    const d = new LeaderElector(kc, { namespace: NS, name: 'irqtrace-stopped-leader', identity: 'd', retryPeriodMs: 300, log, onStartedLeading: () => events.push('d leads'), onStoppedLeading: () => events.push('d stops') });
    // The first attempt (read, then create the lease) is under way when stop() comes.
    d.start();
    await d.stop();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(d.isLeader).toBe(false);
    expect(events).toEqual(['d leads', 'd stops']);
    const lease = await coordination.readNamespacedLease({ name: 'irqtrace-stopped-leader', namespace: NS });
    expect(lease.spec?.holderIdentity ?? '').toBe('');
  });

  it('takes a lease its holder stopped renewing, after a whole lease duration of its own clock', async () => {
    const coordination = kc.makeApiClient(k8s.CoordinationV1Api);
    const now = new k8s.V1MicroTime();
    await coordination.createNamespacedLease({
      namespace: NS,
      body: { metadata: { name: 'irqtrace-ghost-leader' }, spec: { holderIdentity: 'crashed', leaseDurationSeconds: 2, acquireTime: now, renewTime: now, leaseTransitions: 3 } },
    });
    const events: string[] = [];
    const c = new LeaderElector(kc, { namespace: NS, name: 'irqtrace-ghost-leader', identity: 'c', retryPeriodMs: 300, log, onStartedLeading: () => events.push('c leads'), onStoppedLeading: () => events.push('c stops') });
    const started = Date.now();
    c.start();
    await waitUntil('c leads', 10_000, async () => Promise.resolve(c.isLeader));
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    const lease = await coordination.readNamespacedLease({ name: 'irqtrace-ghost-leader', namespace: NS });
    expect([lease.spec?.holderIdentity, lease.spec?.leaseTransitions]).toEqual(['c', 4]);
    await c.stop();
  });
});
