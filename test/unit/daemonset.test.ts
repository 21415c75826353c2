// The agent DaemonSet's pod: in the pod network by default; in the node's
// network only when the operator is configured so (clusters whose pods cannot
// reach the ingest Service), and then with the DNS policy that keeps cluster names.
import { describe, expect, it } from 'vitest';
import type { IrqTrace } from '@irqtrace/operator';
import { AGENT_STOP_SECONDS, agentDaemonSet } from '../../operator/src/controller/daemonset.js';

const trace: IrqTrace = { apiVersion: 'irqtrace.io/v1alpha1', kind: 'IrqTrace', metadata: { name: 't', uid: 'u' }, spec: { target: { all: true } } };
const deployment = { namespace: 'irqtrace-system', image: 'agent:1', ingestAddress: 'ingest:9443' };

describe('agent DaemonSet networking', () => {
  it('keeps agents in the pod network unless hostNetwork is asked for', () => {
    const spec = agentDaemonSet([trace], deployment)?.spec?.template.spec;
    expect(spec?.hostNetwork).toBeUndefined();
    expect(spec?.dnsPolicy).toBeUndefined();
  });

  it('puts agents in the node network with ClusterFirstWithHostNet when asked', () => {
    const spec = agentDaemonSet([trace], { ...deployment, hostNetwork: true })?.spec?.template.spec;
    expect(spec?.hostNetwork).toBe(true);
    expect(spec?.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(spec?.containers[0]?.args).toContain('ingest:9443');
  });
});

describe('the driver loader and the agent', () => {
  const podOf = (t: IrqTrace) => agentDaemonSet([t], deployment)?.spec?.template.spec;
  const argAfter = (args: string[] | undefined, flag: string) => args?.[args.indexOf(flag) + 1];

  it('loads the module in an init container with the node headers; the agent reads its state and builds nothing', () => {
    const pod = podOf(trace);
    const [loader] = pod?.initContainers ?? [];
    const agent = pod?.containers[0];
    expect(loader?.args?.slice(0, 2)).toEqual(['driver', 'load']);
    expect(loader?.image).toBe('agent:1');
    expect(loader?.securityContext?.privileged).toBe(true);
    expect(loader?.volumeMounts?.map((m) => m.mountPath)).toEqual(expect.arrayContaining(['/lib/modules', '/usr/src', '/host/usr/lib', '/var/lib/irqtrace', '/run/irqtrace']));
    expect(argAfter(loader?.args, '--cache')).toBe('/var/lib/irqtrace/modules');
    expect(argAfter(loader?.args, '--host-usr-lib')).toBe('/host/usr/lib');
    // gcc's memory is the loader's, not the agent's.
    expect(loader?.resources?.limits?.memory).toBe('1Gi');
    expect(agent?.resources?.limits?.memory).toBe('256Mi');
    // One state file, written by one container and read by the other.
    expect(argAfter(agent?.args, '--driver-state')).toBe(argAfter(loader?.args, '--state'));
    expect(agent?.args).not.toContain('--source');
    expect(agent?.volumeMounts?.map((m) => m.mountPath)).not.toContain('/usr/src');
    // The module's device is made at load, after the container's own /dev: the host's is read.
    expect(argAfter(agent?.args, '--dev')).toBe('/host/dev');
    expect(agent?.volumeMounts?.map((m) => m.mountPath)).toContain('/host/dev');
  });

  it('gives the agent the time to unload before the kubelet kills it, and probe timeouts a slow node holds', () => {
    const pod = podOf(trace);
    expect(pod?.terminationGracePeriodSeconds).toBeGreaterThan(AGENT_STOP_SECONDS);
    for (const probe of [pod?.containers[0]?.readinessProbe, pod?.containers[0]?.livenessProbe]) expect(probe?.timeoutSeconds).toBeGreaterThanOrEqual(10);
  });

  it('runs no loader and mounts no host headers, /usr/lib or /dev for an eBPF-only agent', () => {
    const ebpf: IrqTrace = { ...trace, spec: { ...trace.spec, backend: 'ebpf' } };
    const pod = podOf(ebpf);
    expect(pod?.initContainers).toBeUndefined();
    expect(pod?.volumes?.map((v) => v.hostPath?.path).filter(Boolean)).toEqual(['/sys/fs/cgroup', '/var/log/pods', '/sys/kernel/tracing', '/var/lib/irqtrace']);
    expect(pod?.containers[0]?.args).not.toContain('--driver-state');
  });

  it("names pods from the kubelet's pod logs, read-only, and serves `irqtrace record` on a socket in the pod", () => {
    for (const backend of ['ebpf', 'kmod'] as const) {
      const pod = podOf({ ...trace, spec: { ...trace.spec, backend } });
      const agent = pod?.containers[0];
      expect(pod?.volumes?.find((v) => v.name === 'pod-logs')?.hostPath?.path).toBe('/var/log/pods');
      expect(agent?.volumeMounts?.find((m) => m.name === 'pod-logs')).toEqual({ name: 'pod-logs', mountPath: '/host/var/log/pods', readOnly: true });
      const args = agent?.args ?? [];
      expect(args[args.indexOf('--pod-logs') + 1]).toBe('/host/var/log/pods');
      const socket = args[args.indexOf('--local-socket') + 1] ?? '';
      // The socket's directory is the pod's own and writable (the root filesystem may be read-only).
      const run = agent?.volumeMounts?.find((m) => socket.startsWith(`${m.mountPath}/`));
      expect(run?.readOnly).toBeFalsy();
      expect(pod?.volumes?.find((v) => v.name === run?.name)?.emptyDir).toBeDefined();
    }
  });
});
