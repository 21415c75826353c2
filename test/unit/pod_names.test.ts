// Pods named from the kubelet's pod log directories: the parse, re-reading on
// a miss (bounded to once a second), and the task attribution that uses it.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TaskAttributor, procFs } from '@irqtrace/agent';
import { PodNames, parsePodLogDir } from '../../agent/src/attribution/pod_names.js';
import { formatWhere } from '../../agent/src/cli/format.js';

const UID = '6a3c1f0e-3b2d-4c7a-9f1e-2d4b5c6a7e8f';
const OTHER = '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0';

describe('pod log directory names', () => {
  it('parses <namespace>_<name>_<uid> and nothing else', () => {
    expect(parsePodLogDir(`workload_offender-tracing_${UID}`)).toEqual({ namespace: 'workload', name: 'offender-tracing', uid: UID });
    // Pod names are DNS subdomains: dots allowed.
    expect(parsePodLogDir(`kube-system_etcd-node.a_${UID}`)).toEqual({ namespace: 'kube-system', name: 'etcd-node.a', uid: UID });
    for (const bad of ['workload_offender', `workload_${UID}`, `a_b_c_${UID}`, `Work_x_${UID}`, `ns_name_${UID}x`, '.', 'lost+found']) {
      expect(parsePodLogDir(bad), bad).toBeUndefined();
    }
  });

  it('finds a pod that appears later, reading at most once per interval', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'irqtrace-pods-'));
    mkdirSync(join(dir, `workload_first_${UID}`));
    let now = 0;
    const pods = new PodNames(dir, 1000, () => now);
    expect(await pods.nameOf(UID)).toEqual({ namespace: 'workload', name: 'first' });
    mkdirSync(join(dir, `workload_second_${OTHER}`));
    // A miss within the interval does not read again.
    expect(await pods.nameOf(OTHER)).toBeUndefined();
    expect(pods.reads).toBe(1);
    now = 1500;
    expect(await pods.nameOf(OTHER)).toEqual({ namespace: 'workload', name: 'second' });
    // A hit never reads.
    expect(await pods.nameOf(UID)).toEqual({ namespace: 'workload', name: 'first' });
    expect(pods.reads).toBe(2);
  });

  it('leaves pods unnamed where there is no kubelet', async () => {
    const pods = new PodNames(join(tmpdir(), 'irqtrace-no-such-dir'));
    expect(await pods.nameOf(UID)).toBeUndefined();
  });

  it("names a task's pod in its attribution and in the table", async () => {
    const proc = mkdtempSync(join(tmpdir(), 'irqtrace-proc-'));
    mkdirSync(join(proc, '4242'));
    writeFileSync(join(proc, '4242', 'cgroup'), `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replaceAll('-', '_')}.slice/cri-containerd-${'ab'.repeat(32)}.scope\n`);
    const logs = mkdtempSync(join(tmpdir(), 'irqtrace-pods-'));
    mkdirSync(join(logs, `workload_offender_${UID}`));
    const named = await new TaskAttributor(procFs(proc), {}, undefined, new PodNames(logs)).attribute(4242);
    expect(named).toMatchObject({ podUid: UID, podNamespace: 'workload', podName: 'offender', runtime: 'containerd' });
    expect(formatWhere(named)).toBe('workload/offender');
    const unnamed = await new TaskAttributor(procFs(proc)).attribute(4242);
    expect(unnamed?.podName).toBeUndefined();
    expect(formatWhere(unnamed)).toBe('pod 6a3c1f0e');
  });
});
