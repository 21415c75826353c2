// pid -> cgroup, container and pod, cached: a violation storm from one task
// reads its /proc/<pid>/cgroup once, not per event. Bounded (LRU) and short-
// lived, because pids are reused.
import { attributeCgroup, cgroupPathOf } from './cgroup.js';
import type { CgroupAttribution } from './cgroup.js';
import type { ProcFs } from './procfs.js';

export interface TaskAttributorOptions {
  maxEntries?: number;
  ttlMs?: number;
  now?: () => number;
}

export class TaskAttributor {
  private readonly cache = new Map<number, { at: number; value: CgroupAttribution | undefined }>();
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  /** Lookups of a pid that had already exited: attribution lost, counted. */
  missing = 0;

  constructor(
    private readonly proc: ProcFs,
    options: TaskAttributorOptions = {},
  ) {
    this.maxEntries = options.maxEntries ?? 4096;
    this.ttlMs = options.ttlMs ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** Pids cached now. */
  get size(): number {
    return this.cache.size;
  }

  /** The task's attribution; undefined for pid 0 (idle) and for tasks gone before we looked. */
  async attribute(pid: number): Promise<CgroupAttribution | undefined> {
    if (pid === 0) return undefined;
    const hit = this.cache.get(pid);
    const now = this.now();
    if (hit && now - hit.at < this.ttlMs) {
      // Refresh its place in the LRU order.
      this.cache.delete(pid);
      this.cache.set(pid, hit);
      return hit.value;
    }
    const text = await this.proc.read(`${pid}/cgroup`);
    const path = text === undefined ? undefined : cgroupPathOf(text);
    const value = path === undefined ? undefined : attributeCgroup(path);
    if (text === undefined) this.missing++;
    this.cache.delete(pid);
    this.cache.set(pid, { at: now, value });
    while (this.cache.size > this.maxEntries) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined) break;
      this.cache.delete(oldest);
    }
    return value;
  }
}
