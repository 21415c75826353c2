// cgroup v2 id -> path. A record carries the task's cgroup id (the inode
// number of its cgroup directory), which still names the cgroup when the
// task has exited before the agent could read /proc/<pid>/cgroup. Built by
// walking the cgroup2 mount; walked again on a miss, at most once a second.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RereadOnMiss } from './reread_on_miss.js';

const MAX_CGROUPS = 200_000;

export class CgroupIndex {
  private readonly byId: RereadOnMiss<bigint, string>;

  constructor(
    private readonly root = '/sys/fs/cgroup',
    minWalkIntervalMs = 1000,
    now: () => number = Date.now,
  ) {
    this.byId = new RereadOnMiss(() => this.walk(), minWalkIntervalMs, now);
  }

  /** Walks of the hierarchy so far. */
  get walks(): number {
    return this.byId.reads;
  }

  async pathOf(id: bigint): Promise<string | undefined> {
    return id === 0n ? undefined : this.byId.get(id);
  }

  private async walk(): Promise<Map<bigint, string>> {
    const found = new Map<bigint, string>();
    const pending = [''];
    while (pending.length && found.size < MAX_CGROUPS) {
      const rel = pending.pop() ?? '';
      const dir = join(this.root, rel);
      try {
        found.set((await stat(dir, { bigint: true })).ino, rel === '' ? '/' : rel);
        for (const entry of await readdir(dir, { withFileTypes: true })) {
          if (entry.isDirectory()) pending.push(`${rel}/${entry.name}`);
        }
      } catch {
        // Removed while walking: skip it.
      }
    }
    return found;
  }
}
