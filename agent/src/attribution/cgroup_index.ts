// cgroup v2 id -> path. A record carries the task's cgroup id (the inode
// number of its cgroup directory), which still names the cgroup when the
// task has exited before the agent could read /proc/<pid>/cgroup. Built by
// walking the cgroup2 mount; walked again on a miss, at most once a second.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

const MAX_CGROUPS = 200_000;

export class CgroupIndex {
  private byId = new Map<bigint, string>();
  private lastWalk = -Infinity;
  /** Walks of the hierarchy so far. */
  walks = 0;

  constructor(
    private readonly root = '/sys/fs/cgroup',
    private readonly minWalkIntervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  async pathOf(id: bigint): Promise<string | undefined> {
    if (id === 0n) return undefined;
    const known = this.byId.get(id);
    if (known !== undefined || this.now() - this.lastWalk < this.minWalkIntervalMs) return known;
    await this.walk();
    return this.byId.get(id);
  }

  private async walk(): Promise<void> {
    this.lastWalk = this.now();
    this.walks++;
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
    this.byId = found;
  }
}
