// The one agent DaemonSet, as the IrqTraces want it (DESIGN.md §4): on the
// union of the traces' nodes, owned by every live trace (so garbage collection
// removes it with the last one), with only the privileges the backends need.
import type { V1DaemonSet, V1NodeAffinity, V1OwnerReference, V1ResourceRequirements, V1Toleration } from '@kubernetes/client-node';
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
}

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
          priorityClassName: d.priorityClassName ?? 'system-node-critical',
          tolerations: d.tolerations ?? [{ operator: 'Exists' }],
          ...(affinity ? { affinity: { nodeAffinity: affinity } } : {}),
          terminationGracePeriodSeconds: 30,
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
                '--source', '/usr/lib/irqtrace/kmod',
                '--cgroup-root', '/host/sys/fs/cgroup',
              ],
              env: [
                { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                { name: 'NODE_OPTIONS', value: '--max-semi-space-size=2 --max-old-space-size=192' },
              ],
              ports: [{ name: 'metrics', containerPort: metricsPort }],
              readinessProbe: { httpGet: { path: '/readyz', port: 'metrics' }, periodSeconds: 10 },
              livenessProbe: { httpGet: { path: '/healthz', port: 'metrics' }, periodSeconds: 20, failureThreshold: 6 },
              resources: d.resources ?? { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } },
              securityContext: privileged
                ? { privileged: true }
                : { privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'], add: EBPF_CAPABILITIES } },
              volumeMounts: [
                { name: 'modules', mountPath: '/lib/modules', readOnly: true },
                { name: 'usr-src', mountPath: '/usr/src', readOnly: true },
                { name: 'cgroup', mountPath: '/host/sys/fs/cgroup', readOnly: true },
                { name: 'tracefs', mountPath: '/sys/kernel/tracing', readOnly: true },
                { name: 'spool', mountPath: '/var/lib/irqtrace' },
                { name: 'tmp', mountPath: '/tmp' },
                ...(d.tlsSecret ? [{ name: 'tls', mountPath: '/etc/irqtrace/tls', readOnly: true }] : []),
              ],
            },
          ],
          volumes: [
            // Headers to build the module against the node's kernel, as node agents do.
            hostPath('modules', '/lib/modules', 'Directory'),
            hostPath('usr-src', '/usr/src', 'Directory'),
            hostPath('cgroup', '/sys/fs/cgroup', 'Directory'),
            // Tracepoint ids for the eBPF programs (libbpf reads events/*/*/id); a container's /sys has no tracefs.
            hostPath('tracefs', '/sys/kernel/tracing', 'Directory'),
            // Unacked batches survive agent restarts and upgrades.
            hostPath('spool', '/var/lib/irqtrace', 'DirectoryOrCreate'),
            // The root filesystem is read-only; building the module needs scratch space.
            { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
            ...(d.tlsSecret ? [{ name: 'tls', secret: { secretName: d.tlsSecret, defaultMode: 0o400 } }] : []),
          ],
        },
      },
    },
  };
}
