// Guests as real Kubernetes nodes (issue 15's first step): both kernel
// flavours join the test cluster with kubelet, containerd and runc, show
// Ready with their kernel versions, and run a pod from an image imported
// without a registry, in real cgroups the runtime made. Pod Security admission
// is the hardened default: baseline enforced unless a namespace says otherwise.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../lib/ports.js';
import { waitUntil } from '../lib/wait.js';
import { startCluster } from '../cluster/cluster.js';
import type { Cluster } from '../cluster/cluster.js';
import { Vm } from '../vm/vm.js';
import type { Flavour } from '../vm/vm.js';
import { KubeNode, nodeImages } from './node.js';

const flavours: Flavour[] = ['debian', 'tracing'];
const nodeName = (f: Flavour) => `node-${f}`;

let cluster: Cluster;
const vms: Vm[] = [];
const nodes = new Map<Flavour, KubeNode>();
let busybox = '';

beforeAll(async () => {
  cluster = await startCluster({ scheduler: true, podSecurity: true, nodes: flavours.map(nodeName) });
  const images = await nodeImages();
  busybox = images.busybox.ref;
  let subnet = 1;
  for (const flavour of flavours) {
    const kubeletPort = await freePort();
    const vm = await Vm.boot({ flavour, memoryMb: 3072, forwards: [kubeletPort] });
    vms.push(vm);
    nodes.set(flavour, await KubeNode.join(vm, cluster, {
      name: nodeName(flavour),
      kubeletPort,
      podCidr: `10.244.${subnet++}.0/24`,
      images: [images.busybox.archive],
      labels: { 'irqtrace.test/kernel': flavour },
      say: (line) => {
        console.log(line);
      },
    }));
  }
});

afterAll(async () => {
  for (const node of nodes.values()) await node.stop();
  for (const vm of vms) await vm.stop();
  await cluster.stop();
});

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await cluster.kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

interface NodeJson {
  metadata: { name: string };
  status: { nodeInfo: { kernelVersion: string; containerRuntimeVersion: string; kubeletVersion: string }; conditions: { type: string; status: string }[] };
}

describe('guests as Kubernetes nodes', () => {
  it('shows every guest Ready with its kernel version and containerd 2', async () => {
    const list = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as { items: NodeJson[] };
    for (const [i, flavour] of flavours.entries()) {
      const node = list.items.find((n) => n.metadata.name === nodeName(flavour));
      expect(node, nodeName(flavour)).toBeDefined();
      expect(node?.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
      expect(node?.status.nodeInfo.kernelVersion).toBe(vms[i]?.kernel.release);
      expect(node?.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\/2\./);
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
            image: busybox,
            imagePullPolicy: 'Never',
            command: ['sh', '-c', 'uname -r; cat /proc/self/cgroup; sleep 3600'],
            securityContext: { allowPrivilegeEscalation: false, runAsNonRoot: true, runAsUser: 1000, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } },
          }],
        },
      };
      await kubectl(['apply', '-f', '-'], JSON.stringify(pod));
    }
    for (const [i, flavour] of flavours.entries()) {
      await waitUntil(`pod hello-${flavour} Running`, 300_000, async () =>
        (await kubectl(['get', 'pod', '-n', 'workload', `hello-${flavour}`, '-o', 'jsonpath={.status.phase}'])) === 'Running', 2000);
      const uid = await kubectl(['get', 'pod', '-n', 'workload', `hello-${flavour}`, '-o', 'jsonpath={.metadata.uid}']);
      // kubectl logs: the API server reaches the kubelet through its forward.
      let logs = '';
      await waitUntil(`logs of hello-${flavour}`, 60_000, async () => {
        const r = await cluster.kubectl(['logs', '-n', 'workload', `hello-${flavour}`]);
        logs = r.stdout;
        return r.code === 0 && logs.includes('0::');
      }, 1000);
      expect(logs.split('\n')[0]).toBe(vms[i]?.kernel.release);
      // In its own cgroup namespace the container sees "/"; the node sees where the
      // cgroupfs driver put it: kubepods/<qos>/pod<uid>/<container id>.
      expect(logs).toMatch(/^0::\/$/m);
      const seen = await vms[i]?.run('for p in $(pidof sleep); do cat /proc/$p/cgroup; done');
      expect(seen).toMatch(new RegExp(`^0::/kubepods/(besteffort/|burstable/)?pod${uid}/[0-9a-f]{64}$`, 'm'));
    }
  });

  it('refuses a privileged pod where baseline is enforced, and admits it in a namespace labelled privileged', async () => {
    const privileged = (namespace: string) => JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'privileged', namespace },
      spec: { containers: [{ name: 'c', image: busybox, imagePullPolicy: 'Never', command: ['true'], securityContext: { privileged: true } }] },
    });
    const refused = await cluster.kubectl(['apply', '-f', '-'], privileged('workload'));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/violates PodSecurity "baseline:latest": privileged/);
    await kubectl(['create', 'namespace', 'host-access']);
    await kubectl(['label', 'namespace', 'host-access', 'pod-security.kubernetes.io/enforce=privileged']);
    await kubectl(['apply', '-f', '-'], privileged('host-access'));
  });

  it('reports what a node costs at rest: kubelet and containerd CPU, guest memory', async () => {
    for (const [flavour, node] of nodes) {
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
