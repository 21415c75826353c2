// Pod and container attribution from real /proc/<pid>/cgroup samples:
// containerd, cri-o and docker; systemd and cgroupfs drivers; v1, v2, hybrid.
import { describe, expect, it } from 'vitest';
import { attributeCgroup, cgroupPathOf } from '@irqtrace/agent';

const ID = '3f4e5d6c7b8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0';
const UID = '6a3c1f0e-3b2d-4c7a-9f1e-2d4b5c6a7e8f';
const UID_ = UID.replaceAll('-', '_');

describe('cgroup attribution', () => {
  it.each([
    ['v2 systemd containerd burstable', `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope\n`,
      { containerId: ID, runtime: 'containerd', podUid: UID, qos: 'burstable' }],
    ['v2 systemd cri-o besteffort', `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-${ID}.scope\n`,
      { containerId: ID, runtime: 'cri-o', podUid: UID, qos: 'besteffort' }],
    ['v2 systemd guaranteed', `0::/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope\n`,
      { containerId: ID, runtime: 'containerd', podUid: UID, qos: 'guaranteed' }],
    ['v2 cgroupfs containerd', `0::/kubepods/burstable/pod${UID}/${ID}\n`, { containerId: ID, podUid: UID, qos: 'burstable' }],
    ['v2 kind node (nested kubelet slice)', `0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope\n`,
      { containerId: ID, runtime: 'containerd', podUid: UID, qos: 'besteffort' }],
    ['v1 cgroupfs docker-shim era', [
      `12:pids:/kubepods/burstable/pod${UID}/${ID}`,
      `11:memory:/kubepods/burstable/pod${UID}/${ID}`,
      `4:cpu,cpuacct:/kubepods/burstable/pod${UID}/${ID}`,
      `1:name=systemd:/kubepods/burstable/pod${UID}/${ID}`,
    ].join('\n'), { path: `/kubepods/burstable/pod${UID}/${ID}`, containerId: ID, podUid: UID }],
    ['hybrid: empty v2 root, task in v1', [
      `12:memory:/kubepods.slice/kubepods-pod${UID_}.slice/crio-${ID}.scope`,
      '1:name=systemd:/kubepods.slice',
      '0::/',
    ].join('\n'), { containerId: ID, runtime: 'cri-o', podUid: UID, qos: 'guaranteed' }],
    ['docker outside Kubernetes (systemd)', `0::/system.slice/docker-${ID}.scope\n`, { containerId: ID, runtime: 'docker' }],
    ['docker outside Kubernetes (v1 cgroupfs)', `9:memory:/docker/${ID}\n1:name=systemd:/docker/${ID}`, { containerId: ID, runtime: 'docker' }],
    ['podman', `0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope\n`, { containerId: ID, runtime: 'podman' }],
  ])('%s', (_name, text, expected) => {
    const path = cgroupPathOf(text);
    expect(path).toBeDefined();
    expect(attributeCgroup(path ?? '')).toMatchObject(expected);
  });

  it('names no container or pod for host services, conmon or the pod slice itself', () => {
    for (const path of ['/system.slice/sshd.service', '/init.scope', '/user.slice/user-0.slice/session-1.scope']) {
      expect(attributeCgroup(path)).toEqual({ path });
    }
    const conmon = attributeCgroup(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-conmon-${ID}.scope`);
    expect(conmon.containerId).toBeUndefined();
    expect(conmon.podUid).toBe(UID);
    expect(attributeCgroup(`/kubepods/burstable/pod${UID}`)).toMatchObject({ podUid: UID, qos: 'burstable' });
  });

  it('reads no path from nothing', () => {
    expect(cgroupPathOf('')).toBeUndefined();
    expect(cgroupPathOf('0::/\n')).toBe('/');
  });
});
