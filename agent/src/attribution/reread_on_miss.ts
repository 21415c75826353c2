// A map read whole from the system (a directory walk, a listing), read again
// when asked for a key it lacks, at most once per interval: what appears later
// (a new cgroup, a new pod) is found within the interval, and a storm of
// lookups for an unknown key costs one read per interval.
export class RereadOnMiss<K, V> {
  private map = new Map<K, V>();
  private lastRead = -Infinity;
  /** Reads so far. */
  reads = 0;

  /** read: the whole map now, or undefined to keep the last one (the source is not there). */
  constructor(
    private readonly read: () => Promise<Map<K, V> | undefined>,
    private readonly minIntervalMs: number,
    private readonly now: () => number,
  ) {}

  async get(key: K): Promise<V | undefined> {
    const known = this.map.get(key);
    if (known !== undefined || this.now() - this.lastRead < this.minIntervalMs) return known;
    this.lastRead = this.now();
    this.reads++;
    this.map = (await this.read()) ?? this.map;
    return this.map.get(key);
  }
}
