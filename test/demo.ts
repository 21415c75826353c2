// `npm run demo`: irqtrace as a user installs it, on this machine. A real
// control plane (Pod Security: baseline enforced), two QEMU guests that are
// kubelet nodes — one on the project's tracing kernel, one on Debian's stock
// kernel with module loading off, as a hardened node has it — then `helm
// install` from charts/irqtrace, `kubectl apply` of an IrqTrace, the agents as
// DaemonSet pods (the module built by their init container on the tracing node,
// eBPF on Debian's), a workload pod on each node that keeps interrupts off,
// named by pod in `kubectl get irqtraces` and the status; then delete and
// `helm uninstall`. It says how long each step took and leaves nothing running.
//
// `npm run demo -- --keep` stops once the workload pods are named and leaves
// all of it running (owned by a detached process, as `npm run cluster -- up`
// does): it prints the KUBECONFIG and a shell per node, for trying traces of
// one's own; `npm run cluster -- down` stops it.
import { Command, Option } from 'commander';
import { waitUntil } from './lib/wait.js';
import { clusterEnv, clusterLog, describeCluster, followOwner, forgetClusterState, markClusterReady, readClusterState, startOwner, writeClusterState } from './node/cluster_state.js';
import type { ClusterState } from './node/cluster_state.js';
import { FLAVOURS, NODE_THRESHOLD, NS, NodeRig, OFFENDER_US, allIrqsExample, WORKLOAD_NS, isReady, nodeName, offenderName } from './node/rig.js';
import type { TraceStatus } from './node/rig.js';

const started = Date.now();
const say = (line: string) => {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);
};
const show = (text: string) => {
  console.log(text.replace(/\n+$/, '').replace(/^/gm, '    '));
};
const ms = (ns: number | string | undefined) => `${(Number(ns ?? 0) / 1e6).toFixed(3)} ms`;

/** Runs a step, then says how long it took. */
async function step<T>(what: string, run: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  say(`${what} ...`);
  const out = await run();
  say(`${what}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return out;
}

type Offender = NonNullable<TraceStatus['worstOffenders']>[number];

function offenderLine(v: Offender): string {
  const who = v.pod ? `pod ${v.pod}` : 'no pod';
  return `${ms(v.durationNs).padStart(11)}  ${(v.kind ?? '').replace('_', ' ')} cpu ${v.cpu ?? '?'}  ${`${v.comm ?? '?'}/${v.pid ?? '?'}`.padEnd(12)} ${who.padEnd(30)} ${v.node ?? ''}\n${''.padEnd(13)}${(v.topFrames ?? []).slice(0, 3).join(' < ')}`;
}

async function watchTable(rig: NodeRig, until: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  let last = '';
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const table = await rig.kubectl(['get', 'irqtraces']);
    // AGE changes every second: print the table when anything else does.
    const key = table.replace(/\s+\S+$/gm, '');
    if (key !== last) {
      say('$ kubectl get irqtraces');
      show(table);
      last = key;
    }
    if (await until()) return;
    if (Date.now() > deadline) throw new Error('the status did not name the workload pods in time');
    await new Promise((r) => setTimeout(r, 3000));
  }
}

/**
 * The demo. keep: the detached owner of `--keep`, which stops after the workload pods are named,
 * says so in the cluster state and runs until SIGTERM (`npm run cluster -- down`).
 */
async function main(keep?: ClusterState): Promise<void> {
  say('starting the control plane (etcd, kube-apiserver with Pod Security baseline, controller-manager, scheduler), then two QEMU guests as kubelet nodes');
  const rig = await step('nodes joined (containerd, kubelet, images imported without a registry)', () => NodeRig.start({ say, debianModulesDisabled: true }));
  let stopping = false;
  const cleanup = async () => {
    if (stopping) return;
    stopping = true;
    say('stopping the nodes, the guests, NATS and the control plane');
    await rig.stop();
    if (keep) forgetClusterState();
  };
  process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
  if (keep) process.once('SIGTERM', () => { void cleanup().then(() => process.exit(0)); });
  let agentPodsRunning = 0;
  let offenderPod = '';
  let nodesReady = 0;
  let helmState = 'none';
  try {
    say('$ kubectl get nodes -o wide');
    show(await rig.kubectl(['get', 'nodes', '-o', 'wide']));
    const conditions = await rig.kubectl(['get', 'nodes', '-o', 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}']);
    nodesReady = conditions.split('\n').filter((c) => c === 'True').length;
    say(`${nodeName('debian')}: kernel.modules_disabled=1 (a hardened node): the agent there must fall back to eBPF`);

    say('$ helm install irqtrace charts/irqtrace -n irqtrace-system --wait  (values: the built images, external NATS, host network — why: test/node/rig.ts)');
    const install = await step('helm install (operator pod Ready)', () => rig.helm('install'));
    if (install.code !== 0) throw new Error(`helm install: ${install.stderr}`);
    show(install.stdout.split('\n').slice(0, 6).join('\n'));

    say(`$ kubectl apply -f examples/irqtrace-all.yaml   (threshold ${NODE_THRESHOLD} here: under emulation 1-50 ms sections are everywhere)`);
    show(await rig.kubectl(['apply', '-f', '-'], allIrqsExample()));
    const pods = await step('agent pods Ready on both nodes (the operator made the DaemonSet)', () => rig.waitForAgents());
    say('$ kubectl get pods -n irqtrace-system -o wide');
    show(await rig.kubectl(['get', 'pods', '-n', NS, '-o', 'wide']));
    await step(`${nodeName('tracing')}: the driver loader (the pod's init container) builds irqtrace.ko against the node's headers and caches it; the agent loads it`, () =>
      waitUntil('irqtrace.ko loaded', 900_000, () => rig.moduleLoaded('tracing'), 3000));
    for (const pod of pods) {
      say(`$ kubectl logs -n irqtrace-system ${pod.metadata.name} -c driver | tail -1   (on ${pod.spec.nodeName})`);
      show((await rig.kubectl(['logs', '-n', NS, pod.metadata.name, '-c', 'driver'])).trim().split('\n').slice(-1).join('\n'));
    }
    await step('both nodes reporting to the trace', () => waitUntil('both nodes reporting', 300_000, async () => (await rig.status('all-irqs')).nodesReporting === FLAVOURS.length, 2000));
    for (const n of (await rig.status('all-irqs')).nodes ?? []) {
      say(`  ${n.name}: ${n.backend ?? '?'}/${n.method ?? '?'}${n.message ? ` — ${n.message}` : ''}`);
    }
    const agent = pods.find((p) => p.spec.nodeName === nodeName('tracing'));
    if (agent) {
      say(`$ kubectl logs -n irqtrace-system ${agent.metadata.name} | tail -3   (a service log: JSON)`);
      show((await rig.kubectl(['logs', '-n', NS, agent.metadata.name])).trim().split('\n').slice(-3).join('\n'));
    }

    say(`a workload pod on each node (namespace ${WORKLOAD_NS}, root without capabilities: baseline admits it) keeps interrupts off for ${OFFENDER_US / 1000} ms every 10 s`);
    await rig.startOffenders();
    await step('the workload pods named in the status', () => watchTable(rig, async () => {
      const worst = (await rig.status('all-irqs')).worstOffenders ?? [];
      return FLAVOURS.every((f) => worst.some((v) => v.pod === `${WORKLOAD_NS}/${offenderName(f)}`));
    }, 300_000));
    const s = await rig.status('all-irqs');
    say('all-irqs: worst offenders (from its status)');
    for (const v of s.worstOffenders ?? []) show(offenderLine(v));
    say('all-irqs: per node');
    for (const n of s.nodes ?? []) show(`${n.name.padEnd(14)} ${`${n.backend ?? '?'}/${n.method ?? '?'}`.padEnd(14)} ${n.phase ?? ''}  ${String(n.violations ?? 0)} violations, max ${ms(n.maxDurationNs)}, lost ${String(n.lost ?? 0)}`);
    offenderPod = s.worstOffenders?.find((v) => v.pod?.startsWith(`${WORKLOAD_NS}/`))?.pod ?? '';
    for (const f of FLAVOURS) {
      say(`$ kubectl logs -n ${WORKLOAD_NS} ${offenderName(f)} | tail -1   (the selftest's own account of its last section)`);
      show((await rig.kubectl(['logs', '-n', WORKLOAD_NS, offenderName(f)])).trim().split('\n').slice(-1).join('\n'));
    }
    const release = JSON.parse((await rig.cluster.helm(['status', 'irqtrace', '-n', NS, '-o', 'json'])).stdout || '{}') as { info?: { status?: string } };
    helmState = release.info?.status === 'deployed' ? 'installed' : release.info?.status ?? 'none';
    agentPodsRunning = (await rig.podsOf('agent')).filter((p) => p.status.phase === 'Running' && isReady(p)).length;
    if (keep) {
      say('--keep: the cluster, the nodes, irqtrace and the workload stay up');
      markClusterReady(keep, rig, true, summary(nodesReady, agentPodsRunning, offenderPod, helmState));
      return;
    }

    say('$ kubectl delete irqtrace all-irqs');
    show(await rig.kubectl(['delete', 'irqtrace', 'all-irqs', '--timeout=300s']));
    await step(`${nodeName('tracing')}: irqtrace.ko unloaded`, () => waitUntil('module unloaded', 120_000, async () => !(await rig.moduleLoaded('tracing')), 2000));
    await step(`${nodeName('debian')}: the eBPF programs detached`, () =>
      waitUntil('loader gone', 120_000, async () => (await rig.node('debian').vm.run('pidof irqtrace-bpf || true')).trim() === '', 2000));
    say('$ helm uninstall irqtrace -n irqtrace-system --wait');
    const uninstall = await step('helm uninstall', () => rig.cluster.helm(['uninstall', 'irqtrace', '-n', NS, '--wait', '--timeout', '5m']));
    show(uninstall.stdout || uninstall.stderr);
    await waitUntil('no irqtrace pod left', 300_000, async () => (await rig.kubectl(['get', 'pods', '-n', NS, '-o', 'name'])).trim() === '', 2000);
    say('$ kubectl get pods,daemonsets -n irqtrace-system; kubectl get crd irqtraces.irqtrace.io');
    show((await rig.cluster.kubectl(['get', 'pods,daemonsets', '-n', NS])).stderr || 'No resources found');
    show(await rig.kubectl(['get', 'crd', 'irqtraces.irqtrace.io']));
    say('the CRD is kept on uninstall (deleting it would delete every IrqTrace)');
  } catch (err) {
    await cleanup();
    throw err;
  }
  await cleanup();
  say('done: nothing left running.');
  console.log(summary(nodesReady, agentPodsRunning, offenderPod, helmState));
}

const summary = (nodesReady: number, agentPods: number, offenderPod: string, helm: string) =>
  `demo: nodes_ready=${nodesReady} agent_pods_running=${agentPods} offender_pod=${offenderPod || 'none'} helm=${helm}`;

/** `--keep`: the demo in a detached owner; this process follows it until it is ready, then says how to reach it. */
async function keepInBackground(): Promise<void> {
  const running = readClusterState();
  const { pid, started } = startOwner(import.meta.filename, ['--keep', '--owner']);
  if (!started) throw new Error(`a cluster is already running (pid ${pid}, ${running?.owner ?? '?'}): npm run cluster -- down first`);
  console.log(`demo --keep: running in the background (pid ${pid}; log ${clusterLog})`);
  const ready = await followOwner(pid);
  process.stdout.write(`demo --keep: left running; source ${clusterEnv}, or paste:\n${describeCluster(ready)}`);
  console.log(ready.summary ?? 'demo: none');
}

async function owner(): Promise<void> {
  const state: ClusterState = { pid: process.pid, owner: 'npm run demo -- --keep', ready: false, startedAt: new Date().toISOString() };
  writeClusterState(state);
  try {
    await main(state);
  } catch (err) {
    writeClusterState({ ...state, error: err instanceof Error ? err.message : String(err) });
    throw err;
  }
}

const options = new Command('demo')
  .description('irqtrace installed with helm on two kubelet nodes of QEMU guests, a workload pod named as the offender')
  .option('--keep', 'leave the cluster, the nodes and irqtrace running and print how to reach them')
  .addOption(new Option('--owner', 'the detached process that owns a kept cluster').hideHelp())
  .parse()
  .opts<{ keep?: boolean; owner?: boolean }>();

(options.owner ? owner() : options.keep ? keepInBackground() : main()).catch((err: unknown) => {
  console.error('demo failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
