// A cluster whose QEMU guests are kubelet nodes, and irqtrace installed on it
// as a user installs it: `helm install` of charts/irqtrace with the images
// images/ built, then `kubectl apply`. Shared by the node test and the demo.
//
// What this rig cannot give pods, and how the chart's values make up for it
// (each is a value a real cluster may need too):
// - No Service proxy in the guests (no kube-proxy: the tracing kernel has no
//   netfilter), so a pod cannot reach a ClusterIP. The operator runs in its
//   node's network (operator.hostNetwork) and reaches the API server and NATS
//   at loopback forwards of the host's (operator.extraEnv sets
//   KUBERNETES_SERVICE_HOST/PORT); the agents use their node's network too
//   (agent.hostNetwork) and dial the ingest at agent.ingestAddress, the
//   operator's node port forwarded through the host's loopback.
// - A hostNetwork operator is refused by baseline, so the namespace is
//   labelled before install; with a Service network the operator labels its
//   namespace itself before it makes the agents (agent.podSecurityLabel).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildKmod } from '../../kmod/test/harness.js';
import { startCluster } from '../cluster/cluster.js';
import type { Cluster } from '../cluster/cluster.js';
import { repoRoot } from '../lib/paths.js';
import type { RunResult } from '../lib/process.js';
import { freePort } from '../lib/ports.js';
import { waitUntil } from '../lib/wait.js';
import { startNats } from '../nats/nats.js';
import type { Nats } from '../nats/nats.js';
import { Vm } from '../vm/vm.js';
import type { Flavour } from '../vm/vm.js';
import { KubeNode, builtImage, nodeImages } from './node.js';

export const FLAVOURS: readonly Flavour[] = ['debian', 'tracing'];
export const NS = 'irqtrace-system';
export const WORKLOAD_NS = 'workload';
export const nodeName = (f: Flavour): string => `node-${f}`;
/** The workload's section: long enough to stand out of emulation's own stretches. */
export const OFFENDER_US = 80_000;
/**
 * The traces' threshold on these nodes. Under TCG, sections of 1 to 50 ms are everywhere (the
 * emulator's, not the guest's): at the example's 1 ms each node reports thousands a minute and the
 * kernel ring and the agent's queue overflow (counted losses), which would hide the losses the tests
 * look for. The workload's 80 ms stands out of it.
 */
export const NODE_THRESHOLD = '50ms';

/** examples/irqtrace-all.yaml as a user would apply it, with this rig's threshold. */
export function allIrqsExample(): string {
  const text = readFileSync(join(repoRoot, 'examples/irqtrace-all.yaml'), 'utf8');
  if (!/^ {2}threshold: \S+$/m.test(text)) throw new Error('examples/irqtrace-all.yaml has no threshold line to set');
  return text.replace(/^ {2}threshold: \S+$/m, `  threshold: ${NODE_THRESHOLD}`);
}
export const offenderName = (f: Flavour): string => `offender-${f}`;

export interface PodJson {
  metadata: { name: string; uid: string };
  spec: { nodeName: string; containers?: { name: string; image: string }[] };
  status: { phase: string; conditions?: { type: string; status: string }[]; containerStatuses?: { restartCount: number; ready: boolean }[] };
}

export interface TraceStatus {
  violations?: number | string;
  lost?: number | string;
  nodesReporting?: number;
  worstOffenders?: { pod?: string; node?: string; durationNs?: string | number; comm?: string; pid?: number; kind?: string; cpu?: number; topFrames?: string[] }[];
  nodes?: { name: string; backend?: string; method?: string; phase?: string; message?: string; violations?: number | string; maxDurationNs?: number | string; lost?: number | string }[];
}

export const isReady = (p: PodJson): boolean => !!p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

type Say = (line: string) => void;

export interface NodeRigOptions {
  say?: Say;
  /** Debian's node refuses modules (kernel.modules_disabled=1), as a hardened node may. */
  debianModulesDisabled?: boolean;
}

export class NodeRig {
  readonly vms: Vm[] = [];
  readonly nodes = new Map<Flavour, KubeNode>();
  nats: Nats | undefined;

  private constructor(
    readonly cluster: Cluster,
    /** The images' references; agentArchive: the agent's docker-archive the nodes imported. */
    readonly images: { busybox: string; agent: string; operator: string; agentArchive: string },
    /** The ingest's port: the operator pod's on the tracing node, forwarded through the host into the Debian node. */
    readonly ingestPort: number,
    private readonly say: Say,
  ) {}

  /** The control plane, then each guest booted and joined as a node with the images imported. */
  static async start(options: NodeRigOptions = {}): Promise<NodeRig> {
    const say = options.say ?? ((line: string) => { console.log(line); });
    // The images first: a missing one fails here, before anything runs that would need stopping.
    const [images, agent, operator] = await Promise.all([nodeImages(), builtImage('agent'), builtImage('operator')]);
    const cluster = await startCluster({ scheduler: true, podSecurity: true, nodes: FLAVOURS.map(nodeName) });
    const rig = new NodeRig(cluster, { busybox: images.busybox.ref, agent: agent.ref, operator: operator.ref, agentArchive: agent.archive }, await freePort(), say);
    try {
      // Both guests at once: a join is mostly the guest unpacking images under emulation, a core each.
      await Promise.all(FLAVOURS.map(async (flavour, i) => {
        const kubeletPort = await freePort();
        say(`booting the ${flavour} guest`);
        const vm = await Vm.boot({ flavour, memoryMb: 4096, forwards: flavour === 'tracing' ? [kubeletPort, rig.ingestPort] : [kubeletPort] });
        rig.vms.push(vm);
        rig.nodes.set(flavour, await KubeNode.join(vm, cluster, {
          name: nodeName(flavour),
          kubeletPort,
          podCidr: `10.244.${i + 1}.0/24`,
          // The operator's image only where it runs (its nodeSelector): an import costs a minute here.
          images: [images.busybox.archive, agent.archive, ...(flavour === 'tracing' ? [operator.archive] : [])],
          labels: { 'irqtrace.test/kernel': flavour },
          say,
        }));
      }));
      await rig.prepare(options);
    } catch (err) {
      await rig.stop();
      throw err;
    }
    return rig;
  }

  node(flavour: Flavour): KubeNode {
    const node = this.nodes.get(flavour);
    if (!node) throw new Error(`no ${flavour} node`);
    return node;
  }

  /** NATS on the host, the forwards the operator and agents use, and the workload's trigger. */
  private async prepare(options: NodeRigOptions): Promise<void> {
    const nats = await startNats();
    this.nats = nats;
    const tracing = this.node('tracing').vm;
    const debian = this.node('debian').vm;
    // External NATS on the host's loopback, forwarded into the operator's node at the same port.
    await tracing.forwardToHost(nats.port, nats.port);
    // The ingest listens on the tracing node: the Debian node's agents reach it through the host.
    await debian.forwardToHost(this.ingestPort, this.ingestPort);
    // The workload's ground truth: the selftest module, taking commands at /proc/irqtrace_selftest
    // too, where an ordinary container (root, no capabilities, no devices) can write them.
    for (const vm of this.vms) {
      const { selftest } = await buildKmod(vm.kernel);
      await vm.run(`insmod ${vm.hostPath(selftest)} proc_trigger=1 && test -f /proc/irqtrace_selftest`);
    }
    if (options.debianModulesDisabled) await debian.run('echo 1 >/proc/sys/kernel/modules_disabled');
  }

  /**
   * The agent image under a new tag on every node: what an upgrade to a new release looks like
   * to the kubelet and the DaemonSet (a new image reference), without a second build.
   */
  async retagAgentImage(suffix: string): Promise<string> {
    const next = `${this.images.agent}-${suffix}`;
    for (const node of this.nodes.values()) await node.tagImage(this.images.agent, next);
    return next;
  }

  async kubectl(args: string[], input?: string): Promise<string> {
    const r = await this.cluster.kubectl(args, input);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  /** The values this rig needs, each for a reason a real cluster could have too (see the top). */
  helmValues(agentImage = this.images.agent): string[] {
    const image = (prefix: string, ref: string) => {
      const colon = ref.lastIndexOf(':');
      return ['--set', `${prefix}.repository=${ref.slice(0, colon)}`, '--set', `${prefix}.tag=${ref.slice(colon + 1)}`, '--set', `${prefix}.pullPolicy=Never`];
    };
    return [
      ...image('image', this.images.operator),
      ...image('agent.image', agentImage),
      '--set', 'operator.replicas=1',
      '--set', 'operator.nodeSelector.irqtrace\\.test/kernel=tracing',
      '--set', 'operator.hostNetwork=true',
      '--set', 'operator.extraEnv[0].name=KUBERNETES_SERVICE_HOST', '--set', 'operator.extraEnv[0].value=127.0.0.1',
      '--set', 'operator.extraEnv[1].name=KUBERNETES_SERVICE_PORT', '--set-string', `operator.extraEnv[1].value=${new URL(this.cluster.server).port}`,
      '--set', 'nats.bundled=false', '--set', `nats.url=${this.nats?.url ?? ''}`,
      '--set', `ingest.port=${this.ingestPort}`,
      '--set', 'agent.hostNetwork=true', '--set', `agent.ingestAddress=127.0.0.1:${this.ingestPort}`,
      // Quick status for the waits.
      '--set', 'operator.statusIntervalMs=500',
    ];
  }

  /**
   * `helm install` (or upgrade) from charts/irqtrace, then waits for an operator pod of this
   * release Ready. (helm's --wait cannot: a host-network operator rolls with maxUnavailable 1,
   * so for helm no pod need be available.) Its output.
   */
  async helm(verb: 'install' | 'upgrade', agentImage = this.images.agent): Promise<RunResult> {
    if (verb === 'install') {
      await this.kubectl(['create', 'namespace', NS]);
      await this.kubectl(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=privileged']);
    }
    const before = new Set((await this.podsOf('operator')).map((p) => p.metadata.name));
    const r = await this.cluster.helm([verb, 'irqtrace', join(repoRoot, 'charts/irqtrace'), '-n', NS, '--wait', '--timeout', '10m', ...this.helmValues(agentImage)]);
    if (r.code !== 0) return r;
    await waitUntil(`the operator pod Ready after helm ${verb}`, 600_000, async () => {
      const pods = await this.podsOf('operator');
      return pods.some((p) => !before.has(p.metadata.name) && isReady(p)) && pods.every((p) => !before.has(p.metadata.name));
    }, 2000);
    return r;
  }

  async podsOf(component: 'agent' | 'operator'): Promise<PodJson[]> {
    return (JSON.parse(await this.kubectl(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/component=${component}`, '-o', 'json'])) as { items: PodJson[] }).items;
  }

  async waitForAgents(timeoutMs = 600_000): Promise<PodJson[]> {
    let pods: PodJson[] = [];
    await waitUntil('agent pods Ready on both nodes', timeoutMs, async () => {
      pods = await this.podsOf('agent');
      return new Set(pods.filter(isReady).map((p) => p.spec.nodeName)).size === FLAVOURS.length;
    }, 3000);
    return pods;
  }

  async moduleLoaded(flavour: Flavour): Promise<boolean> {
    return /^irqtrace /m.test(await this.node(flavour).vm.run('cat /proc/modules'));
  }

  async status(trace: string): Promise<TraceStatus> {
    return JSON.parse((await this.kubectl(['get', 'irqtrace', trace, '-o', 'jsonpath={.status}'])) || '{}') as TraceStatus;
  }

  /**
   * A workload pod on each node in its own namespace (baseline: root, no capabilities, no
   * privilege escalation) that keeps interrupts off for OFFENDER_US every 10 s, through the
   * selftest's /proc trigger; each log line is the selftest's own account of a section.
   */
  async startOffenders(): Promise<void> {
    const exists = await this.cluster.kubectl(['get', 'namespace', WORKLOAD_NS]);
    if (exists.code !== 0) await this.kubectl(['create', 'namespace', WORKLOAD_NS]);
    for (const flavour of FLAVOURS) {
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: offenderName(flavour), namespace: WORKLOAD_NS },
        spec: {
          nodeName: nodeName(flavour),
          terminationGracePeriodSeconds: 1,
          containers: [{
            name: 'offender',
            image: this.images.busybox,
            imagePullPolicy: 'Never',
            command: ['sh', '-c', `exec 3<>/proc/irqtrace_selftest || exit 1; while :; do echo "irqoff ${OFFENDER_US}" >&3; read -r line <&3; echo "$line"; sleep 10; done`],
            // Root (the trigger is root's, mode 0600) and nothing more: baseline admits it.
            securityContext: { runAsUser: 0, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } },
          }],
        },
      };
      await this.kubectl(['apply', '-f', '-'], JSON.stringify(pod));
    }
  }

  async stop(): Promise<void> {
    for (const node of this.nodes.values()) await node.stop().catch(() => undefined);
    for (const vm of this.vms) await vm.stop().catch(() => undefined);
    await this.cluster.stop();
    await this.nats?.stop();
  }
}
