// pid -> cgroup, container and pod, cached: a violation storm from one task
// reads its /proc/<pid>/cgroup once, not per event. Bounded (LRU) and short-
// lived, because pids are reused.
import { attributeCgroup, cgroupPathOf } from './cgroup.js';
import type { CgroupAttribution } from './cgroup.js';
import type { ProcFs } from './procfs.js';
import { TtlCache } from './ttl_cache.js';
import type { CgroupIndex } from './cgroup_index.js';
import type { PodNames } from './pod_names.js';

export interface TaskAttributorOptions {
  maxEntries?: number;
  ttlMs?: number;
  staleMs?: number;
  now?: () => number;
}

const IDLE = Object.freeze({ value: undefined });

export class TaskAttributor {
  private readonly cache: TtlCache<number, CgroupAttribution | undefined>;
  /** Lookups of a pid that had already exited: attribution lost, counted. */
  missing = 0;

  constructor(
    private readonly proc: ProcFs,
    options: TaskAttributorOptions = {},
    private readonly index?: CgroupIndex,
    private readonly pods?: PodNames,
  ) {
    this.cache = new TtlCache(
      async (pid) => {
        const text = await this.proc.read(`${pid}/cgroup`);
        const path = text === undefined ? undefined : cgroupPathOf(text);
        return path === undefined ? undefined : this.named(attributeCgroup(path));
      },
      // Served up to 5 s stale while re-read: a reused pid is misattributed for at most that long.
      { maxEntries: options.maxEntries ?? 4096, ttlMs: options.ttlMs ?? 10_000, staleMs: options.staleMs ?? 5_000, now: options.now },
    );
  }

  /** Pids cached now. */
  get size(): number {
    return this.cache.size;
  }

  /**
   * The attribution if it needs no reading: { value } for pid 0 (undefined)
   * and for a live task cached; undefined when attribute() must look.
   */
  cached(pid: number): { value: CgroupAttribution | undefined } | undefined {
    if (pid === 0) return IDLE;
    const hit = this.cache.peek(pid);
    return hit?.value ? hit : undefined;
  }

  /**
   * The task's attribution; undefined for pid 0 (idle). A task gone before
   * we looked is found by the record's cgroup id, if an index is given.
   */
  async attribute(pid: number, cgroupId = 0n): Promise<CgroupAttribution | undefined> {
    if (pid === 0) return undefined;
    const live = await this.cache.get(pid);
    if (live) return live;
    const path = this.index ? await this.index.pathOf(cgroupId) : undefined;
    if (path === undefined) {
      this.missing++;
      return undefined;
    }
    return this.named(attributeCgroup(path));
  }

  /** With the pod's namespace and name, when the node knows them. */
  private async named(who: CgroupAttribution): Promise<CgroupAttribution> {
    const pod = who.podUid && this.pods ? await this.pods.nameOf(who.podUid) : undefined;
    return pod ? { ...who, podNamespace: pod.namespace, podName: pod.name } : who;
  }
}
