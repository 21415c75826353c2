// A bounded map of loaded values that expire. When full, the entry loaded
// longest ago goes first. A value past its ttl but within staleMs more is
// still served by peek() while one reload runs in the background, so a
// violation storm from a known task never waits for /proc.
export interface TtlCacheOptions {
  maxEntries: number;
  ttlMs: number;
  /** How long past ttlMs peek() may serve the old value while reloading (0: never). */
  staleMs?: number;
  now?: () => number;
}

interface Entry<V> {
  at: number;
  value: V;
}

export class TtlCache<K, V> {
  private readonly entries = new Map<K, Entry<V>>();
  private readonly loading = new Map<K, Promise<V>>();
  private readonly now: () => number;
  /** Background reloads that failed: their stale values were dropped. */
  reloadFailures = 0;

  constructor(
    private readonly load: (key: K) => Promise<V>,
    private readonly o: TtlCacheOptions,
  ) {
    this.now = o.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The value if it needs no waiting ({ value }): fresh, or stale within
   * staleMs (then reloaded in the background). Undefined: call get().
   */
  peek(key: K): { value: V } | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    const age = this.now() - hit.at;
    if (age < this.o.ttlMs) return hit;
    if (age >= this.o.ttlMs + (this.o.staleMs ?? 0)) return undefined;
    if (!this.loading.has(key)) {
      this.reload(key).catch(() => {
        this.reloadFailures++;
        this.entries.delete(key);
      });
    }
    return hit;
  }

  /** The fresh value, loaded (once, however many ask at a time) when missing or expired. */
  async get(key: K): Promise<V> {
    const hit = this.entries.get(key);
    if (hit && this.now() - hit.at < this.o.ttlMs) return hit.value;
    return this.loading.get(key) ?? this.reload(key);
  }

  private reload(key: K): Promise<V> {
    const at = this.now();
    const loaded = this.load(key).then(
      (value) => {
        this.loading.delete(key);
        // Re-inserted: the map's order is the order of loading.
        this.entries.delete(key);
        this.entries.set(key, { at, value });
        this.evict();
        return value;
      },
      (err: unknown) => {
        this.loading.delete(key);
        throw err;
      },
    );
    this.loading.set(key, loaded);
    return loaded;
  }

  private evict(): void {
    for (const key of this.entries.keys()) {
      if (this.entries.size <= this.o.maxEntries) break;
      this.entries.delete(key);
    }
  }
}
