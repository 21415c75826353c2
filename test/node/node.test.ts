// Guests as real Kubernetes nodes (issue 15's first step): both kernel
// flavours join the test cluster with kubelet, containerd and runc, show
// Ready with their kernel versions, and run a pod from an image imported
// without a registry, in real cgroups the runtime made. Pod Security admission
// is the hardened default: baseline enforced unless a namespace says otherwise.
// Then irqtrace as a user installs it: `helm install` of charts/irqtrace with
// the images built by images/, `kubectl apply` of an example, agents as
// DaemonSet pods doing their job from inside the container, `helm uninstall`.
import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../lib/process.js';
import { waitUntil } from '../lib/wait.js';
import { tallyStream } from '../e2e/rig.js';
import { FLAVOURS as flavours, NODE_THRESHOLD, NS, NodeRig, OFFENDER_US, allIrqsExample, WORKLOAD_NS, isReady, nodeName, offenderName } from './rig.js';
import type { PodJson, TraceStatus } from './rig.js';
import { must } from '../../kmod/test/harness.js';
import type { Flavour } from '../vm/vm.js';
import { ABI_VERSION } from '../../agent/src/records/layout.js';

// NodeRig.start stops what it started when it fails.
let rig: NodeRig;

beforeAll(async () => {
  rig = await NodeRig.start({ debianModulesDisabled: true });
});

afterAll(async () => {
  await rig.stop();
});

const kubectl = (args: string[], input?: string) => rig.kubectl(args, input);

interface NodeJson {
  metadata: { name: string };
  status: { nodeInfo: { kernelVersion: string; containerRuntimeVersion: string; kubeletVersion: string }; conditions: { type: string; status: string }[] };
}

/**
 * Quiet (threshold out of reach), then: every event in the stream once, and the status counting
 * exactly those, per node; the threshold back after. Returns the status.
 */
async function expectExactCounts(after: string): Promise<TraceStatus> {
  await kubectl(['patch', 'irqtrace', 'all-irqs', '--type=merge', '-p', '{"spec":{"threshold":"60s"}}']);
  await new Promise((r) => setTimeout(r, 20_000));
  const tally = await tallyStream(rig.nats?.url ?? '');
  expect(tally.duplicates, 'a batch published twice').toBe(0);
  const want = tally.events.get('all-irqs') ?? 0;
  await waitUntil(`the status counting what the stream holds (${want})`, 60_000, async () => Number((await rig.status('all-irqs')).violations ?? 0) === want, 2000);
  const s = await rig.status('all-irqs');
  for (const f of flavours) expect(Number(s.nodes?.find((n) => n.name === nodeName(f))?.violations ?? 0), nodeName(f)).toBe(tally.byNode.get(`all-irqs/${nodeName(f)}`) ?? 0);
  console.log(`node: after ${after} status violations=${String(s.violations)} stream events=${want} duplicates=${tally.duplicates} lost=${String(s.lost ?? 0)}`);
  await kubectl(['patch', 'irqtrace', 'all-irqs', '--type=merge', '-p', JSON.stringify({ spec: { threshold: NODE_THRESHOLD } })]);
  return s;
}

describe('guests as Kubernetes nodes', () => {
  it('shows every guest Ready with its kernel version and containerd 2', async () => {
    const list = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as { items: NodeJson[] };
    for (const flavour of flavours) {
      const node = list.items.find((n) => n.metadata.name === nodeName(flavour));
      expect(node, nodeName(flavour)).toBeDefined();
      expect(node?.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
      expect(node?.status.nodeInfo.kernelVersion).toBe(rig.node(flavour).vm.kernel.release);
      expect(node?.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\/2\./);
      // Laid out as distributions lay it: headers under /usr/src, the build link resolving on the node, the config in /boot.
      const release = rig.node(flavour).vm.kernel.release;
      const layout = await rig.node(flavour).vm.run(`readlink /lib/modules/${release}/build; test -f /lib/modules/${release}/build/Makefile && echo headers; grep -c '^CONFIG_MODULES=y' /boot/config-${release}`);
      expect(layout).toBe(`/usr/src/linux-headers-${release}\nheaders\n1\n`);
    }
    console.log(await kubectl(['get', 'nodes', '-o', 'wide']));
  });

  it('runs a pod on each node in cgroups made by the runtime, from an imported image', async () => {
    await kubectl(['create', 'namespace', 'workload']);
    for (const flavour of flavours) {
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `hello-${flavour}`, namespace: 'workload' },
        spec: {
          nodeName: nodeName(flavour),
          restartPolicy: 'Never',
          containers: [{
            name: 'hello',
            image: rig.images.busybox,
            imagePullPolicy: 'Never',
            command: ['sh', '-c', 'uname -r; cat /proc/self/cgroup; sleep 3600'],
            securityContext: { allowPrivilegeEscalation: false, runAsNonRoot: true, runAsUser: 1000, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } },
          }],
        },
      };
      await kubectl(['apply', '-f', '-'], JSON.stringify(pod));
    }
    for (const flavour of flavours) {
      await waitUntil(`pod hello-${flavour} Running`, 300_000, async () =>
        (await kubectl(['get', 'pod', '-n', 'workload', `hello-${flavour}`, '-o', 'jsonpath={.status.phase}'])) === 'Running', 2000);
      const uid = await kubectl(['get', 'pod', '-n', 'workload', `hello-${flavour}`, '-o', 'jsonpath={.metadata.uid}']);
      // kubectl logs: the API server reaches the kubelet through its forward.
      let logs = '';
      await waitUntil(`logs of hello-${flavour}`, 60_000, async () => {
        const r = await rig.cluster.kubectl(['logs', '-n', 'workload', `hello-${flavour}`]);
        logs = r.stdout;
        return r.code === 0 && logs.includes('0::');
      }, 1000);
      expect(logs.split('\n')[0]).toBe(rig.node(flavour).vm.kernel.release);
      // In its own cgroup namespace the container sees "/"; the node sees where the
      // cgroupfs driver put it: kubepods/<qos>/pod<uid>/<container id>.
      expect(logs).toMatch(/^0::\/$/m);
      const seen = await rig.node(flavour).vm.run('for p in $(pidof sleep); do cat /proc/$p/cgroup; done');
      expect(seen).toMatch(new RegExp(`^0::/kubepods/(besteffort/|burstable/)?pod${uid}/[0-9a-f]{64}$`, 'm'));
    }
  });

  it('refuses a privileged pod where baseline is enforced, and admits it in a namespace labelled privileged', async () => {
    const privileged = (namespace: string) => JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'privileged', namespace },
      spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: rig.images.busybox, imagePullPolicy: 'Never', command: ['true'], securityContext: { privileged: true } }] },
    });
    const refused = await rig.cluster.kubectl(['apply', '-f', '-'], privileged('workload'));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/violates PodSecurity "baseline:latest": privileged/);
    await kubectl(['create', 'namespace', 'host-access']);
    await kubectl(['label', 'namespace', 'host-access', 'pod-security.kubernetes.io/enforce=privileged']);
    await kubectl(['apply', '-f', '-'], privileged('host-access'));
  });

  it('reports what a node costs at rest: kubelet and containerd CPU, guest memory', async () => {
    for (const [flavour, node] of rig.nodes) {
      const before = await node.cpuSeconds();
      const seconds = 30;
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const after = await node.cpuSeconds();
      const mem = (await node.vm.run("free -m | awk '/^Mem:/ { print $3 }'")).trim();
      const pct = (a: number, b: number) => (((a - b) / seconds) * 100).toFixed(1);
      console.log(`node: flavour=${flavour} kubelet_cpu_pct=${pct(after.kubelet, before.kubelet)} containerd_cpu_pct=${pct(after.containerd, before.containerd)} guest_mem_used_mb=${mem} ` +
        Object.entries(node.times).map(([k, v]) => `${k}_s=${(v / 1000).toFixed(1)}`).join(' '));
      expect(after.kubelet).toBeGreaterThan(0);
    }
  });
});

describe('irqtrace installed with helm: the operator and the agents as pods', () => {
  /** The pod's one agent on this node. */
  const agentOn = async (f: Flavour) => (await rig.podsOf('agent')).find((p) => p.spec.nodeName === nodeName(f));
  /** What the pod's driver loader (init container) said it did: its last JSON line. */
  const driverSaid = async (pod: PodJson) => {
    const lines = (await kubectl(['logs', '-n', NS, pod.metadata.name, '-c', 'driver'])).trim().split('\n');
    return JSON.parse(lines.at(-1) ?? '{}') as { msg?: string; how?: string; ok?: boolean; reason?: string; seconds?: number; buildSeconds?: number; module?: string };
  };
  const measured = new Map<Flavour, Record<string, number | string>>();
  const measure = (f: Flavour, fields: Record<string, number | string>) => { measured.set(f, { ...measured.get(f), ...fields }); };

  it('installs from charts/irqtrace; agents 1/1 Running on both nodes: the module built by the driver loader in the pod on the tracing kernel, eBPF where modules are off, saying why', async () => {
    let started = Date.now();
    const install = await rig.helm('install');
    expect(install.code, install.stderr).toBe(0);
    console.log(`node: helm install (operator pod Ready) took ${((Date.now() - started) / 1000).toFixed(0)} s`);
    const [operatorPod] = await rig.podsOf('operator');
    expect(operatorPod?.spec.nodeName).toBe(nodeName('tracing'));

    started = Date.now();
    await kubectl(['apply', '-f', '-'], allIrqsExample());
    const pods = await rig.waitForAgents();
    const readyS = (Date.now() - started) / 1000;
    console.log(`node: agent pods Ready on both nodes ${readyS.toFixed(0)} s after kubectl apply`);
    const wide = await kubectl(['get', 'pods', '-n', NS, '-o', 'wide']);
    console.log(wide);
    for (const f of flavours) expect(wide).toMatch(new RegExp(`^irqtrace-agent-\\S+\\s+1/1\\s+Running\\s+\\d+\\s.*\\s${nodeName(f)}\\s`, 'm'));
    for (const pod of [...pods, operatorPod].filter((p): p is PodJson => !!p)) {
      const lines = (await kubectl(['logs', '-n', NS, pod.metadata.name])).trim().split('\n');
      // A service log: every line one JSON object.
      for (const line of lines) expect(() => JSON.parse(line) as unknown, line).not.toThrow();
      console.log(`${pod.metadata.name} on ${pod.spec.nodeName}: ${lines.length} log lines; last: ${lines.at(-1) ?? ''}`);
    }

    // The tracing kernel: built in the init container against the node's headers, cached, loaded.
    const tracingPod = await agentOn('tracing');
    if (!tracingPod) throw new Error('no agent pod on the tracing node');
    const built = await driverSaid(tracingPod);
    console.log(`node: driver loader on ${nodeName('tracing')}: ${JSON.stringify(built)}`);
    expect(built).toMatchObject({ ok: true, how: 'built' });
    expect(built.module).toMatch(/^\/var\/lib\/irqtrace\/modules\//);
    expect(await rig.moduleLoaded('tracing')).toBe(true);
    expect(await rig.node('tracing').vm.run('cat /sys/module/irqtrace/version')).toBe(`${ABI_VERSION}\n`);
    expect(await kubectl(['logs', '-n', NS, tracingPod.metadata.name])).toMatch(/"backend":"kmod"/);
    measure('tracing', { driver_build_s: built.buildSeconds ?? -1, pod_ready_s: Math.round(readyS) });

    // Debian's node refuses modules: the loader says so before building, the agent uses eBPF, the status says why.
    const debianPod = await agentOn('debian');
    if (!debianPod) throw new Error('no agent pod on the Debian node');
    const refused = await driverSaid(debianPod);
    expect(refused).toMatchObject({ ok: false, reason: 'module loading is disabled on this node (kernel.modules_disabled=1)' });
    measure('debian', { driver_build_s: 0, pod_ready_s: Math.round(readyS) });
    await waitUntil('all-irqs reported by both nodes', 300_000, async () =>
      (await kubectl(['get', 'irqtrace', 'all-irqs', '-o', 'jsonpath={.status.nodesReporting}'])) === String(flavours.length), 2000);
    let status: TraceStatus = {};
    await waitUntil("the Debian node's fallback in the status", 120_000, async () => {
      status = await rig.status('all-irqs');
      return !!status.nodes?.some((n) => n.name === nodeName('debian') && n.backend === 'ebpf');
    }, 2000);
    const onDebian = status.nodes?.find((n) => n.name === nodeName('debian'));
    expect(onDebian?.method).toBe('sampled');
    expect(onDebian?.message).toMatch(/kmod: module loading is disabled on this node \(kernel\.modules_disabled=1\); using ebpf/);
    console.log(await kubectl(['get', 'irqtraces']));
  });

  it('names the workload pod that held interrupts off, by namespace and name, on both nodes', async () => {
    await rig.startOffenders();
    let worst: NonNullable<TraceStatus['worstOffenders']> = [];
    await waitUntil('both workload pods among the worst offenders', 300_000, async () => {
      worst = (await rig.status('all-irqs')).worstOffenders ?? [];
      return flavours.every((f) => worst.some((v) => v.pod === `${WORKLOAD_NS}/${offenderName(f)}` && v.node === nodeName(f)));
    }, 3000);
    for (const f of flavours) {
      const v = worst.find((o) => o.pod === `${WORKLOAD_NS}/${offenderName(f)}`);
      console.log(`node: ${nodeName(f)} offender pod=${v?.pod ?? ''} comm=${v?.comm ?? ''} duration_ns=${String(v?.durationNs ?? '')} frames=${(v?.topFrames ?? []).join(' < ')}`);
      // The selftest's busy wait is the section: exact on the tracing kernel, up to a period short when sampled.
      expect(Number(v?.durationNs)).toBeGreaterThan(OFFENDER_US * 1000 * 0.9);
      expect(Number(v?.durationNs)).toBeLessThan(OFFENDER_US * 1000 * 3);
      expect(v?.comm).toBe('sh');
    }
    // The longest section anywhere is a workload pod's (80 ms, where the guests' own stay under
    // the 50 ms threshold): kubectl get names the pod and its task in WORST.
    const table = await kubectl(['get', 'irqtraces']);
    console.log(table);
    expect(table).toMatch(new RegExp(`\\nall-irqs\\s.*\\s\\d+\\.\\d+ms ${WORKLOAD_NS}/offender-(${flavours.join('|')}) \\(sh/\\d+\\) on node-\\w+\\s`));
  });

  it("irqtrace record in the agent pod (kubectl exec) reads the running agent's events and names the same pod", async () => {
    // The module has one reader, the agent: record reads the agent's local stream instead.
    // Two of the offender's periods of 10 s and more, read on both nodes at once.
    const seconds = 25;
    const read = await Promise.all(flavours.map(async (f) => {
      const pod = await agentOn(f);
      if (!pod) throw new Error(`an agent pod on ${nodeName(f)}`);
      // Node.js starting under emulation takes its own 10-30 s on top: more than kubectl's usual minute in all.
      const r = await run(rig.cluster.binaries.kubectl, ['--kubeconfig', rig.cluster.kubeconfigPath, 'exec', '-n', NS, pod.metadata.name, '-c', 'agent', '--', 'irqtrace', 'record', '--duration', `${seconds}s`, '--json'], { timeoutMs: 180_000 });
      return { f, ...r };
    }));
    for (const { f, code, stdout, stderr } of read) {
      console.log(stderr.trim());
      expect(code, stderr).toBe(0);
      expect(stderr).toMatch(new RegExp(`the node agent runs the kernel side here; showing its events \\(node ${nodeName(f)}, pid \\d+: ${f === 'tracing' ? 'kmod' : 'eBPF'}, `));
      const lines = stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type?: string; violationsShown?: number; durationNs?: string; task?: { comm?: string; podNamespace?: string; podName?: string }; traces?: string[] });
      // The events, then a summary (typed: an event has no type).
      const events = lines.filter((l) => l.type === undefined);
      expect(lines.at(-1)).toMatchObject({ type: 'summary', source: 'agent', violationsShown: events.length });
      const offender = events.filter((e) => e.task?.podNamespace === WORKLOAD_NS && e.task.podName === offenderName(f));
      console.log(`record: node=${nodeName(f)} events=${events.length} offender_events=${offender.length} durations_ms=${offender.map((e) => (Number(e.durationNs) / 1e6).toFixed(1)).join(',')}`);
      // The offender's period is 10 s and more (its section, the shell under emulation): 2 or 3 in the window, 1 at least.
      expect(offender.length).toBeGreaterThanOrEqual(1);
      for (const e of offender) {
        expect(e.task?.comm).toBe('sh');
        expect(Number(e.durationNs)).toBeGreaterThan(OFFENDER_US * 1000 * 0.9);
        expect(e.traces).toContain('all-irqs');
      }
      expect(stderr).toMatch(new RegExp(`${events.length} violations shown; lost: 0 by this reader`));
    }
  });

  it('an agent pod deleted: the kubelet starts another, whose driver loader loads the cached module (no rebuild); status and stream agree to the event', async () => {
    const status = () => rig.status('all-irqs');
    const onTracing = async () => (await status()).nodes?.find((n) => n.name === nodeName('tracing'));
    const old = await agentOn('tracing');
    if (!old) throw new Error('an agent pod on the tracing node');
    const was = await onTracing();
    await kubectl(['delete', 'pod', '-n', NS, old.metadata.name, '--wait=true', '--timeout=300s']);
    // The old agent unloaded what it owned when it stopped.
    expect(await rig.moduleLoaded('tracing')).toBe(false);
    const started = Date.now();
    let next: PodJson | undefined;
    await waitUntil('a new agent pod Ready on the tracing node', 300_000, async () => {
      next = (await rig.podsOf('agent')).find((p) => p.spec.nodeName === nodeName('tracing') && p.metadata.name !== old.metadata.name && isReady(p));
      return !!next;
    }, 3000);
    const readyS = (Date.now() - started) / 1000;
    if (!next) throw new Error('no new pod');
    const cached = await driverSaid(next);
    console.log(`node: driver loader of the new pod: ${JSON.stringify(cached)}; pod Ready ${readyS.toFixed(0)} s after the old one was gone`);
    expect(cached).toMatchObject({ ok: true, how: 'cached' });
    expect(await rig.moduleLoaded('tracing')).toBe(true);
    await waitUntil("the workload's next section counted after the restart", 180_000, async () => Number((await onTracing())?.violations ?? 0) > Number(was?.violations ?? 0), 3000);
    const s = await expectExactCounts('the agent restart');
    // The restart itself lost nothing: what the old agent had not had acked came from its spool.
    const lost = Number(s.nodes?.find((n) => n.name === nodeName('tracing'))?.lost ?? 0) - Number(was?.lost ?? 0);
    expect(lost).toBe(0);
    measure('tracing', { driver_cached_s: cached.seconds ?? -1, restart_pod_ready_s: Math.round(readyS), restart_lost: lost });
    // What the guests hold with the pods running: the images and containers are in their RAM.
    for (const f of flavours) {
      const mem = (await rig.node(f).vm.run("awk '/MemTotal|MemAvailable/ { printf \"%d \", $2 / 1024 }' /proc/meminfo")).trim().split(' ');
      measure(f, { guest_mem_used_mb: Number(mem[0]) - Number(mem[1]), guest_mem_mb: Number(mem[0]) });
    }
  });

  it('helm upgrade to a new agent image: the agents replaced node by node, the cached module loaded, counts exact across it', async () => {
    const next = await rig.retagAgentImage('upgrade');
    const before = await rig.podsOf('agent');
    const was = await rig.status('all-irqs');
    const violationsOf = (s: TraceStatus, f: Flavour) => Number(s.nodes?.find((n) => n.name === nodeName(f))?.violations ?? 0);
    const lostOf = (s: TraceStatus) => Number(s.lost ?? 0);
    const started = Date.now();
    const upgrade = await rig.helm('upgrade', next);
    expect(upgrade.code, upgrade.stderr).toBe(0);
    // Node by node (the DaemonSet's maxUnavailable): while it rolls, an agent runs on at least one node.
    let fewestReady = flavours.length;
    let upgraded: PodJson[] = [];
    await waitUntil('an agent of the new image Ready on every node, the old ones gone', 600_000, async () => {
      const pods = await rig.podsOf('agent');
      fewestReady = Math.min(fewestReady, pods.filter(isReady).length);
      upgraded = pods.filter((p) => isReady(p) && p.spec.containers?.find((c) => c.name === 'agent')?.image === next);
      return upgraded.length === flavours.length && pods.length === flavours.length;
    }, 2000);
    const rolledS = (Date.now() - started) / 1000;
    console.log(`node: helm upgrade to ${next}: agents replaced in ${rolledS.toFixed(0)} s, at least ${fewestReady} of ${flavours.length} Ready throughout`);
    expect(fewestReady).toBeGreaterThanOrEqual(flavours.length - 1);
    for (const f of flavours) {
      const pod = upgraded.find((p) => p.spec.nodeName === nodeName(f));
      expect(before.some((p) => p.metadata.name === pod?.metadata.name), `${nodeName(f)}: a new pod`).toBe(false);
    }
    const tracingPod = must(upgraded.find((p) => p.spec.nodeName === nodeName('tracing')));
    expect(await driverSaid(tracingPod)).toMatchObject({ ok: true, how: 'cached' });
    expect(await rig.moduleLoaded('tracing')).toBe(true);
    // Both nodes trace again: the workload's next section counted on each.
    await waitUntil("each node's next section counted after the upgrade", 240_000, async () => {
      const s = await rig.status('all-irqs');
      return flavours.every((f) => violationsOf(s, f) > violationsOf(was, f));
    }, 3000);
    const s = await expectExactCounts('the helm upgrade');
    const lost = lostOf(s) - lostOf(was);
    console.log(`upgrade: rolled_s=${rolledS.toFixed(0)} fewest_agents_ready=${fewestReady} status_violations=${String(s.violations)} lost=${lost}`);
    expect(lost, 'lost across the upgrade').toBe(0);
  });

  it('deleting the trace unloads the module and detaches the programs, and removes the agents; helm uninstall leaves no pod', async () => {
    await kubectl(['delete', 'irqtrace', 'all-irqs', '--timeout=300s']);
    // The finalizer released the trace only once the agents had unloaded: nothing is left when delete returns.
    expect(await rig.moduleLoaded('tracing')).toBe(false);
    expect((await rig.node('debian').vm.run('pidof irqtrace-bpf || true')).trim()).toBe('');
    await waitUntil('no agent pod left', 300_000, async () => (await rig.podsOf('agent')).length === 0, 2000);
    const r = await rig.cluster.helm(['uninstall', 'irqtrace', '-n', NS, '--wait', '--timeout', '5m']);
    expect(r.code, r.stderr).toBe(0);
    await waitUntil('no irqtrace pod left', 300_000, async () => (await kubectl(['get', 'pods', '-n', NS, '-o', 'name'])).trim() === '', 2000);
    expect((await kubectl(['get', 'daemonsets', '-n', NS, '-o', 'name'])).trim()).toBe('');
    expect(await kubectl(['get', 'crd', 'irqtraces.irqtrace.io', '-o', 'name'])).toMatch(/irqtraces\.irqtrace\.io/);
    // What the issue asks to be measured, per flavour, in one fixed line each.
    // The archive the nodes imported (the sources may have changed since: a key computed now would not match).
    const imageMb = Math.round(statSync(rig.images.agentArchive).size / 1e6);
    for (const f of flavours) {
      const times = rig.node(f).times;
      const importMs = Object.entries(times).find(([k]) => k.startsWith('import:agent-'))?.[1] ?? -1;
      const m = measured.get(f) ?? {};
      console.log(`pods: flavour=${f} image_mb=${imageMb} import_s=${(importMs / 1000).toFixed(1)} driver_build_s=${String(m.driver_build_s ?? -1)} driver_cached_s=${String(m.driver_cached_s ?? -1)} pod_ready_s=${String(m.pod_ready_s ?? -1)} restart_lost=${String(m.restart_lost ?? 0)} guest_mem_used_mb=${String(m.guest_mem_used_mb ?? -1)}`);
    }
  });
});
