// Who a task belongs to, from its cgroup: the path, and for containers the
// runtime, container id and Kubernetes pod UID. Pure parsing; reading
// /proc/<pid>/cgroup is the caller's job.

export interface CgroupAttribution {
  /** The task's cgroup path (v2, or the most telling v1 hierarchy). */
  path: string;
  /** 64-hex container id, when the path names a container. */
  containerId?: string;
  /** containerd, cri-o, docker or podman, when recognised. */
  runtime?: string;
  /** Kubernetes pod UID (dashes), when the path is under kubepods. */
  podUid?: string;
  /** The pod's namespace and name, where the node says (pod_names.ts). */
  podNamespace?: string;
  podName?: string;
  /** Kubernetes QoS class from the path: guaranteed, burstable or besteffort. */
  qos?: string;
}

// v1 hierarchies in order of preference: the ones kubelet and runtimes always set.
const V1_PREFERENCE = ['memory', 'cpu', 'cpuacct', 'pids', 'name=systemd'];

/** The cgroup path from the text of /proc/<pid>/cgroup, v2 first; undefined if none. */
export function cgroupPathOf(procCgroup: string): string | undefined {
  const entries = procCgroup
    .split('\n')
    .map((line) => /^(\d+):([^:]*):(.*)$/.exec(line.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ id: m[1] ?? '', controllers: (m[2] ?? '').split(','), path: m[3] ?? '' }));
  const v2 = entries.find((e) => e.id === '0' && e.controllers.join('') === '');
  // A hybrid host lists an empty v2 root next to the v1 hierarchies that hold the task.
  if (v2 && (v2.path !== '/' || entries.length === 1)) return v2.path;
  for (const want of V1_PREFERENCE) {
    const hit = entries.find((e) => e.controllers.includes(want));
    if (hit) return hit.path;
  }
  return entries[0]?.path;
}

const POD = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?(?:\/|$)/;
// systemd driver: "<runtime>-<id>.scope"; conmon scopes are the runtime's monitor, not the container.
const SCOPE = /^(cri-containerd|crio|docker|libpod|containerd)-([0-9a-f]{64})\.scope$/;
const BARE_ID = /^([0-9a-f]{64})$/;
const RUNTIMES: Record<string, string> = {
  'cri-containerd': 'containerd',
  containerd: 'containerd',
  crio: 'cri-o',
  docker: 'docker',
  libpod: 'podman',
};

/** Container and pod attribution of a cgroup path (systemd or cgroupfs layout). */
export function attributeCgroup(path: string): CgroupAttribution {
  const out: CgroupAttribution = { path };
  const segments = path.split('/').filter(Boolean);
  const last = segments.at(-1) ?? '';
  const scope = SCOPE.exec(last);
  if (scope) {
    out.runtime = RUNTIMES[scope[1] ?? ''];
    out.containerId = scope[2];
  } else {
    const bare = BARE_ID.exec(last);
    if (bare) {
      out.containerId = bare[1];
      // cgroupfs driver: /docker/<id> outside Kubernetes.
      if (segments.at(-2) === 'docker') out.runtime = 'docker';
    }
  }
  if (segments.some((s) => s.includes('kubepods'))) {
    const pod = POD.exec(path);
    if (pod?.[1]) out.podUid = pod[1].replaceAll('_', '-');
    out.qos = /besteffort/.test(path) ? 'besteffort' : /burstable/.test(path) ? 'burstable' : out.podUid ? 'guaranteed' : undefined;
    if (!out.qos) delete out.qos;
  }
  return out;
}
