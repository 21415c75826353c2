// The one agent DaemonSet, as the IrqTraces want it (DESIGN.md §4): on the
// union of the traces' nodes, owned by every live trace (so garbage collection
// removes it with the last one), with only the privileges the backends need.
import type { V1Container, V1DaemonSet, V1NodeAffinity, V1OwnerReference, V1ResourceRequirements, V1Toleration } from '@kubernetes/client-node';
import { API_GROUP, API_VERSION, KIND } from '../api/crd.js';
import type { IrqTrace } from '../api/schema.js';
import { affinityTerm } from '../model/selector.js';

export const AGENT_NAME = 'irqtrace-agent';
export const AGENT_LABELS = { 'app.kubernetes.io/name': 'irqtrace', 'app.kubernetes.io/component': 'agent' } as const;

/** How agents are run: the operator's own configuration (Helm values). */
export interface AgentDeployment {
  namespace: string;
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  resources?: V1ResourceRequirements;
  /** The driver loader's (init container's): building the module with gcc. */
  driverResources?: V1ResourceRequirements;
  /** Default: tolerate every taint, so control-plane and dedicated nodes are traced too. */
  tolerations?: V1Toleration[];
  priorityClassName?: string;
  serviceAccountName?: string;
  /** host:port of the ingest Service. */
  ingestAddress: string;
  /** Secret with ca.crt, tls.crt and tls.key for mTLS to the ingest; plaintext when absent. */
  tlsSecret?: string;
  /** The name the ingest's certificate has, when the address differs. */
  tlsServerName?: string;
  metricsPort?: number;
  /** Agents in the node's network namespace (their metrics port is then the node's). */
  hostNetwork?: boolean;
  /** Label the namespace so Pod Security admits the agents (default true). */
  podSecurityLabel?: boolean;
}

/** What Pod Security must enforce in the agents' namespace: they use the host, so privileged. */
export const AGENT_POD_SECURITY = { 'pod-security.kubernetes.io/enforce': 'privileged' } as const;

/**
 * Capabilities the agent needs without the module: eBPF (BPF, PERFMON,
 * SYS_RESOURCE for memlock on older kernels), /proc/kallsyms addresses
 * (SYSLOG), other tasks' fds and cgroups for attribution (SYS_PTRACE,
 * DAC_READ_SEARCH).
 */
export const EBPF_CAPABILITIES = ['BPF', 'PERFMON', 'SYS_RESOURCE', 'SYSLOG', 'SYS_PTRACE', 'DAC_READ_SEARCH'];

/**
 * The kernel module backend needs a privileged container: loading it is
 * CAP_SYS_MODULE, but reading /dev/irqtrace (a misc device made at load) is
 * refused by the container's device cgroup unless privileged. eBPF alone
 * runs with EBPF_CAPABILITIES. So: privileged only if a trace may use kmod.
 */
export function needsPrivileged(traces: readonly IrqTrace[]): boolean {
  return traces.some((t) => (t.spec.backend ?? 'auto') !== 'ebpf');
}

/** Node affinity: the union of the traces' selectors; undefined when some trace selects every node. */
export function nodeAffinity(traces: readonly IrqTrace[]): V1NodeAffinity | undefined {
  const terms = [];
  for (const t of traces) {
    const term = affinityTerm(t.spec.nodeSelector);
    if (!term) return undefined;
    terms.push(term);
  }
  return { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } };
}

function ownerOf(t: IrqTrace): V1OwnerReference {
  return { apiVersion: `${API_GROUP}/${API_VERSION}`, kind: KIND, name: t.metadata.name, uid: t.metadata.uid ?? '', blockOwnerDeletion: false };
}

const hostPath = (name: string, path: string, type: string) => ({ name, hostPath: { path, type } });

/** What the agent's rmmod may take (it waits for the module's readers to go): its grace period is this and more. */
export const AGENT_STOP_SECONDS = 120;
/** The pod's run directory: the loader's outcome for the agent, and the agent's local socket (`irqtrace record` in the pod). */
const RUN_DIR = '/run/irqtrace';
const DRIVER_STATE = `${RUN_DIR}/driver.json`;
/** The kubelet's pod log root: its directory names name the pods (the agent holds no Kubernetes credentials). */
const POD_LOGS = '/var/log/pods';

/**
 * The init container that finds the module (`irqtrace driver load`, as Falco's driver loader): a loaded one of
 * the agent's ABI, the node's cached build for this exact kernel (checked), or a new build against the node's
 * headers, cached; else the reason, for the agent to use eBPF. The agent loads the file (and unloads it at
 * SIGTERM): loaded here, it would stay if the pod went before the agent started. gcc needs more memory than
 * the agent ever does.
 */
function driverLoader(d: AgentDeployment): V1Container {
  return {
    name: 'driver',
    image: d.image,
    imagePullPolicy: d.imagePullPolicy ?? 'IfNotPresent',
    args: ['driver', 'load', '--source', '/usr/lib/irqtrace/kmod', '--cache', '/var/lib/irqtrace/modules', '--state', DRIVER_STATE, '--host-usr-lib', '/host/usr/lib'],
    resources: d.driverResources ?? { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } },
    securityContext: { privileged: true },
    volumeMounts: [
      { name: 'modules', mountPath: '/lib/modules', readOnly: true },
      { name: 'usr-src', mountPath: '/usr/src', readOnly: true },
      { name: 'usr-lib', mountPath: '/host/usr/lib', readOnly: true },
      { name: 'spool', mountPath: '/var/lib/irqtrace' },
      { name: 'run', mountPath: RUN_DIR },
      { name: 'tmp', mountPath: '/tmp' },
    ],
  };
}

/** The DaemonSet for these (live) traces; undefined when there are none: nothing runs, nothing is loaded. */
export function agentDaemonSet(traces: readonly IrqTrace[], d: AgentDeployment): V1DaemonSet | undefined {
  if (!traces.length) return undefined;
  const privileged = needsPrivileged(traces);
  const affinity = nodeAffinity(traces);
  const metricsPort = d.metricsPort ?? 9101;
  const tls = d.tlsSecret
    ? ['--tls-ca', '/etc/irqtrace/tls/ca.crt', '--tls-cert', '/etc/irqtrace/tls/tls.crt', '--tls-key', '/etc/irqtrace/tls/tls.key', ...(d.tlsServerName ? ['--tls-server-name', d.tlsServerName] : [])]
    : [];
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: {
      name: AGENT_NAME,
      namespace: d.namespace,
      labels: { ...AGENT_LABELS, 'app.kubernetes.io/managed-by': 'irqtrace-operator' },
      // Every trace owns it: garbage collection removes it with the last one, even without the operator.
      ownerReferences: [...traces].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map(ownerOf),
    },
    spec: {
      selector: { matchLabels: { ...AGENT_LABELS } },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } },
      template: {
        metadata: { labels: { ...AGENT_LABELS }, annotations: { 'irqtrace.io/privileged': String(privileged) } },
        spec: {
          serviceAccountName: d.serviceAccountName ?? AGENT_NAME,
          // Agents hold no Kubernetes credentials: the ingest tells them what to do.
          automountServiceAccountToken: false,
          // The host's tasks, for attribution (pid -> cgroup -> pod).
          hostPID: true,
          ...(d.hostNetwork ? { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' } : {}),
          priorityClassName: d.priorityClassName ?? 'system-node-critical',
          tolerations: d.tolerations ?? [{ operator: 'Exists' }],
          ...(affinity ? { affinity: { nodeAffinity: affinity } } : {}),
          // The agent unloads what it loaded at SIGTERM (rmmod waits up to AGENT_STOP_SECONDS for the module's
          // readers), then flushes its spool: the kubelet must not kill it first, or the module stays loaded.
          terminationGracePeriodSeconds: AGENT_STOP_SECONDS + 30,
          ...(privileged ? { initContainers: [driverLoader(d)] } : {}),
          containers: [
            {
              name: 'agent',
              image: d.image,
              imagePullPolicy: d.imagePullPolicy ?? 'IfNotPresent',
              args: [
                'agent',
                '--ingest', d.ingestAddress,
                ...tls,
                '--spool', '/var/lib/irqtrace/spool',
                '--metrics-port', String(metricsPort),
                '--metrics-host', '0.0.0.0',
                // The module the init container found or built (or why none): the agent loads it and builds nothing.
                ...(privileged ? ['--driver-state', DRIVER_STATE, '--dev', '/host/dev'] : []),
                '--cgroup-root', '/host/sys/fs/cgroup',
                '--pod-logs', `/host${POD_LOGS}`,
                '--local-socket', `${RUN_DIR}/agent.sock`,
              ],
              env: [
                { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                { name: 'NODE_OPTIONS', value: '--max-semi-space-size=2 --max-old-space-size=192' },
              ],
              ports: [{ name: 'metrics', containerPort: metricsPort }],
              // Timeouts a slow node holds: an emulated or overloaded node answers in seconds, not milliseconds.
              readinessProbe: { httpGet: { path: '/readyz', port: 'metrics' }, periodSeconds: 10, timeoutSeconds: 10 },
              livenessProbe: { httpGet: { path: '/healthz', port: 'metrics' }, periodSeconds: 20, timeoutSeconds: 10, failureThreshold: 6 },
              resources: d.resources ?? { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } },
              securityContext: privileged
                ? { privileged: true }
                : { privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'], add: EBPF_CAPABILITIES } },
              volumeMounts: [
                ...(privileged ? [{ name: 'dev', mountPath: '/host/dev' }] : []),
                { name: 'run', mountPath: RUN_DIR },
                { name: 'cgroup', mountPath: '/host/sys/fs/cgroup', readOnly: true },
                { name: 'pod-logs', mountPath: `/host${POD_LOGS}`, readOnly: true },
                { name: 'tracefs', mountPath: '/sys/kernel/tracing', readOnly: true },
                { name: 'spool', mountPath: '/var/lib/irqtrace' },
                { name: 'tmp', mountPath: '/tmp' },
                ...(d.tlsSecret ? [{ name: 'tls', mountPath: '/etc/irqtrace/tls', readOnly: true }] : []),
              ],
            },
          ],
          volumes: [
            ...(privileged
              ? [
                  // The node's headers, to build the module against its kernel, as node agents do.
                  hostPath('modules', '/lib/modules', 'Directory'),
                  // Where distributions keep headers; a node without them gets eBPF, and its status says so.
                  hostPath('usr-src', '/usr/src', 'DirectoryOrCreate'),
                  // Debian's headers link scripts/ and tools/ to /usr/lib/linux-kbuild-<version>.
                  hostPath('usr-lib', '/usr/lib', 'DirectoryOrCreate'),
                  // The module's devices (/dev/irqtrace, _stats) appear at load, in the host's /dev only.
                  hostPath('dev', '/dev', 'Directory'),
                ]
              : []),
            // The loader's outcome for the agent; the agent's local socket, for `kubectl exec ... irqtrace record`.
            { name: 'run', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
            hostPath('cgroup', '/sys/fs/cgroup', 'Directory'),
            // Read-only: names only (pod_names.ts), never a log.
            hostPath('pod-logs', POD_LOGS, 'Directory'),
            // Tracepoint ids for the eBPF programs (libbpf reads events/*/*/id); a container's /sys has no tracefs.
            hostPath('tracefs', '/sys/kernel/tracing', 'Directory'),
            // Unacked batches survive agent restarts and upgrades; built modules survive them too (modules/).
            hostPath('spool', '/var/lib/irqtrace', 'DirectoryOrCreate'),
            // The root filesystem is read-only; the module build needs scratch space.
            { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
            ...(d.tlsSecret ? [{ name: 'tls', secret: { secretName: d.tlsSecret, defaultMode: 0o400 } }] : []),
          ],
        },
      },
    },
  };
}
