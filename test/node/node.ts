// A QEMU guest as a real Kubernetes node: containerd, runc, the CNI bridge
// plugin and a kubelet built from the pinned Kubernetes module, on the
// guest's own tmpfs root, registered with the test cluster's API server.
//
// Only loopback is ever dialled. The kubelet reaches the API server through
// an ssh -R forward on the guest's 127.0.0.1; the API server reaches the
// kubelet (logs, exec) at 127.0.0.1:<kubeletPort>, a QEMU hostfwd to the same
// port in the guest. That address is the node's InternalIP: the kubelet runs
// with --cloud-provider=external and this rig does what a cloud controller
// would (sets the addresses, removes the "uninitialized" taint), since the
// kubelet refuses a loopback --node-ip and every guest's own address is the
// same slirp 10.0.2.15.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { repoRoot, scratchDir } from '../lib/paths.js';
import { runOk } from '../lib/process.js';
import { waitUntil } from '../lib/wait.js';
import { binary } from '../cluster/binaries.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Vm } from '../vm/vm.js';

export type Say = (line: string) => void;

export interface JoinOptions {
  /** Node name; must be one of the cluster's ClusterOptions.nodes. */
  name: string;
  /** The kubelet's port, forwarded by QEMU (BootOptions.forwards) from the host's 127.0.0.1. */
  kubeletPort: number;
  /** This node's pod network (a /24 of 10.244.0.0/16), on a bridge inside the guest only. */
  podCidr: string;
  /** Images to import into containerd, as docker-archive tars on the host (nodeImages() and the built ones). */
  images: readonly string[];
  labels?: Readonly<Record<string, string>>;
  say?: Say;
  readyTimeoutMs?: number;
}

export interface Image {
  ref: string;
  archive: string;
}

/** The pause and busybox images test/setup built (test/node/build-node-images.sh). */
export async function nodeImages(): Promise<{ pause: Image; busybox: Image }> {
  const out = await runOk(join(repoRoot, 'test/node/build-node-images.sh'), ['--cached-only']).catch((err: unknown) => {
    throw new Error(`node images are not built: run test/setup (${String(err)})`);
  });
  const images = out.trim().split('\n').map((line) => {
    const [ref = '', archive = ''] = line.split(' ');
    return { ref, archive };
  });
  const find = (prefix: string): Image => {
    const image = images.find((i) => i.ref.startsWith(prefix));
    if (!image) throw new Error(`build-node-images.sh printed no ${prefix} image`);
    return image;
  };
  return { pause: find('registry.k8s.io/pause:'), busybox: find('localhost/irqtrace/busybox:') };
}

/** An image images/build-archives.sh built (test/setup): agent or operator. */
export async function builtImage(name: 'agent' | 'operator'): Promise<Image> {
  const out = await runOk(join(repoRoot, 'images/build-archives.sh'), ['--cached-only', name]).catch((err: unknown) => {
    throw new Error(`the ${name} image is not built for these sources: run test/setup (${String(err)})`);
  });
  const [, ref = '', archive = ''] = out.trim().split(' ');
  return { ref, archive };
}

/** Times of the steps of a join, in ms, as the guest measured them. */
export type JoinTimes = Record<string, number>;

export class KubeNode {
  private constructor(
    readonly name: string,
    readonly vm: Vm,
    private readonly cluster: Cluster,
    readonly times: JoinTimes,
  ) {}

  static async join(vm: Vm, cluster: Cluster, options: JoinOptions): Promise<KubeNode> {
    const say = options.say ?? (() => {});
    const { name } = options;
    const credentials = cluster.nodeCredentials(name);
    const apiPort = Number(new URL(cluster.server).port);
    // The same port as the host's, on every node: a pod in the node's network finds the API server there.
    const guestApiPort = await vm.forwardToHost(apiPort, apiPort);
    const { pause } = await nodeImages();

    const stage = scratchDir(`node-${name}`);
    const put = (path: string, text: string) => {
      mkdirSync(join(stage, path, '..'), { recursive: true });
      writeFileSync(join(stage, path), text);
    };
    put('etc/kubernetes/pki/ca.crt', credentials.caPem);
    put('etc/kubernetes/pki/kubelet-client-ca.crt', credentials.kubeletClientCaPem);
    put('etc/kubernetes/kubelet.kubeconfig', kubeletKubeconfig(`https://127.0.0.1:${guestApiPort}`, credentials.token, name));
    put('var/lib/kubelet/config.yaml', kubeletConfig(options.kubeletPort));
    put('etc/containerd/config.toml', containerdConfig(pause.ref));
    put('etc/cni/net.d/10-irqtrace-pods.conflist', cniConfig(options.podCidr));
    put('etc/resolv.conf', '# No DNS: pods of this test cluster resolve nothing.\n');

    const [kubelet, containerd, runc, cni] = await Promise.all([
      binary('kube', 'kubelet'),
      binary('containerd', 'containerd'),
      binary('runc', 'runc'),
      binary('cni', 'bridge'),
    ]);
    const dir = (path: string) => path.slice(0, path.lastIndexOf('/'));
    const labels = Object.entries(options.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
    const env: Record<string, string> = {
      STAGE: stage,
      KUBE_BIN: dir(kubelet),
      CONTAINERD_BIN: dir(containerd),
      RUNC_BIN: dir(runc),
      CNI_BIN: dir(cni),
      IMAGES: [pause.archive, ...options.images].join(' '),
      NODE_NAME: name,
      KUBELET_ARGS: ['--cloud-provider=external', ...(labels ? [`--node-labels=${labels}`] : []), '--v=1'].join(' '),
    };
    // Debian's headers come as two trees (arch and -common) side by side, linking to
    // /usr/lib/linux-kbuild-<version> for scripts and tools; the tracing kernel's is its source.
    const buildDir = vm.kernel.buildDir;
    const usr = dirname(dirname(buildDir));
    const within = (dir: string, prefix: string) =>
      readdirSync(join(usr, dir)).filter((n) => n.startsWith(prefix)).map((n) => `${join(usr, dir, n)}:/usr/${dir}/${n}`);
    const headers = basename(buildDir).startsWith('linux-headers-')
      ? [...within('src', 'linux-headers-'), ...within('lib', 'linux-kbuild-')]
      : [`${buildDir}:/usr/src/linux-headers-${vm.kernel.release}`];
    Object.assign(env, { MODULES: vm.kernel.modulesDir, HEADERS: headers.join(' '), KCONFIG: join(buildDir, '.config') });
    const assignments = Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(' ');
    say(`${name}: starting containerd and kubelet (${vm.kernel.release}), importing ${1 + options.images.length} images`);
    const out = await vm.run(`${assignments} sh ${vm.hostPath(join(repoRoot, 'test/node/join-node.sh'))}`, { timeoutMs: 600_000 });
    const times: JoinTimes = {};
    for (const m of out.matchAll(/^join-node: (\S+) (\d+)$/gm)) times[m[1] ?? ''] = Number(m[2]);

    const node = new KubeNode(name, vm, cluster, times);
    const registered = Date.now();
    await node.initialize(options.readyTimeoutMs ?? 300_000);
    times.registered = Date.now() - registered;
    const ready = Date.now();
    await node.waitReady(options.readyTimeoutMs ?? 300_000);
    times.ready = Date.now() - ready;
    say(`${name}: Ready (${Object.entries(times).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')})`);
    return node;
  }

  /** What a cloud controller does for a new node: its addresses, then no "uninitialized" taint. */
  private async initialize(timeoutMs: number): Promise<void> {
    await waitUntil(`node ${this.name} registered`, timeoutMs, async () => {
      const got = await this.cluster.kubectl(['get', 'node', this.name, '-o', 'name']);
      if (got.code !== 0) await this.checkRunning();
      return got.code === 0;
    }, 1000);
    const addresses = { status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }, { type: 'Hostname', address: this.name }] } };
    await this.must(['patch', 'node', this.name, '--subresource=status', '--type=merge', '-p', JSON.stringify(addresses)]);
    const taints = await this.must(['get', 'node', this.name, '-o', 'jsonpath={.spec.taints[*].key}']);
    if (taints.split(' ').includes('node.cloudprovider.kubernetes.io/uninitialized')) {
      await this.must(['taint', 'node', this.name, 'node.cloudprovider.kubernetes.io/uninitialized-']);
    }
  }

  async waitReady(timeoutMs = 300_000): Promise<void> {
    await waitUntil(`node ${this.name} Ready`, timeoutMs, async () => {
      const ready = await this.cluster.kubectl(['get', 'node', this.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
      if (ready.stdout.trim() !== 'True') await this.checkRunning();
      return ready.stdout.trim() === 'True';
    }, 1000);
  }

  /** Fails at once, with the logs, when the kubelet or containerd died. */
  private async checkRunning(): Promise<void> {
    const alive = await this.vm.exec('kill -0 $(cat /run/kubelet.pid) && kill -0 $(cat /run/containerd.pid)');
    if (alive.code !== 0) {
      throw new Error(`${this.name}: kubelet or containerd exited\nkubelet:\n${await this.log('kubelet', 40)}\ncontainerd:\n${await this.log('containerd', 20)}`);
    }
  }

  private async must(args: string[]): Promise<string> {
    const r = await this.cluster.kubectl(args);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  /** The last lines of the kubelet's or containerd's log in the guest. */
  async log(which: 'kubelet' | 'containerd', lines = 50): Promise<string> {
    return (await this.vm.exec(`tail -n ${lines} /var/log/${which}.log`)).stdout;
  }

  /** Another name for an image the node has (as a registry push of a new tag would give it). */
  async tagImage(from: string, to: string): Promise<void> {
    await this.vm.run(`ctr -n k8s.io images tag --force ${from} ${to} >/dev/null`);
  }

  /** CPU seconds the kubelet and containerd (with their shims) used so far, from /proc. */
  async cpuSeconds(): Promise<{ kubelet: number; containerd: number }> {
    const out = await this.vm.run(
      'hz=$(getconf CLK_TCK 2>/dev/null || echo 100); for p in kubelet containerd; do t=0; for pid in $(pidof $p; pidof containerd-shim-runc-v2); do ' +
        '[ $p = kubelet ] && [ "$(cat /proc/$pid/comm)" != kubelet ] && continue; ' +
        'set -- $(cut -d" " -f14,15 /proc/$pid/stat); t=$((t + $1 + $2)); done; echo "$p $t $hz"; done',
    );
    const result = { kubelet: 0, containerd: 0 };
    for (const line of out.trim().split('\n')) {
      const [proc, ticks, hz] = line.split(' ');
      if (proc === 'kubelet' || proc === 'containerd') result[proc] = Number(ticks) / Number(hz);
    }
    return result;
  }

  /** Stops the kubelet, then every container and containerd: nothing keeps running in the guest. */
  async stop(): Promise<void> {
    await this.vm.exec('kill $(cat /run/kubelet.pid) 2>/dev/null; ' +
      'for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks kill -s KILL $t; done; ' +
      'kill $(cat /run/containerd.pid) 2>/dev/null; true', { timeoutMs: 60_000 });
  }
}

function kubeletKubeconfig(server: string, token: string, name: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    `clusters: [{name: irqtrace-test, cluster: {server: "${server}", certificate-authority: /etc/kubernetes/pki/ca.crt}}]`,
    `users: [{name: "system:node:${name}", user: {token: "${token}"}}]`,
    `contexts: [{name: node, context: {cluster: irqtrace-test, user: "system:node:${name}"}}]`,
    'current-context: node',
    '',
  ].join('\n');
}

/**
 * The kubelet for a slow node (TCG runs it 50-100x slower than hardware):
 * status, sync and housekeeping less often than the defaults, no eviction on
 * the tmpfs root, the API server authenticated by its client certificate.
 */
function kubeletConfig(port: number): string {
  return [
    'apiVersion: kubelet.config.k8s.io/v1beta1',
    'kind: KubeletConfiguration',
    'address: 0.0.0.0',
    `port: ${port}`,
    'readOnlyPort: 0',
    'healthzBindAddress: 127.0.0.1',
    'authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: /etc/kubernetes/pki/kubelet-client-ca.crt}}',
    'authorization: {mode: AlwaysAllow}',
    'cgroupDriver: cgroupfs',
    'containerRuntimeEndpoint: unix:///run/containerd/containerd.sock',
    'failSwapOn: false',
    'resolvConf: /etc/resolv.conf',
    'nodeStatusUpdateFrequency: 20s',
    'nodeStatusReportFrequency: 1m',
    'syncFrequency: 30s',
    'fileCheckFrequency: 1m',
    'httpCheckFrequency: 1m',
    'runtimeRequestTimeout: 10m',
    'imageGCHighThresholdPercent: 100',
    'imageGCLowThresholdPercent: 99',
    'evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}',
    'maxPods: 30',
    'serializeImagePulls: false',
    'containerLogMaxSize: 10Mi',
    '',
  ].join('\n');
}

function containerdConfig(sandboxImage: string): string {
  return `version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
# What a node of this test cluster does not use: fewer plugins, less to start under TCG.
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
  "io.containerd.nri.v1.nri",
]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${sandboxImage}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "/usr/local/bin/runc"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
`;
}

/** A bridge inside the guest only; no masquerade, no route out (slirp stays restrict=on). */
function cniConfig(podCidr: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'irqtrace-pods',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: podCidr }]] },
      },
    ],
  }, null, 2);
}
