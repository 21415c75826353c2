// A bounded map whose entries expire: least recently used go first when full.
export class TtlCache<K, V> {
  private readonly entries = new Map<K, { at: number; value: V }>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The cached value if it is fresh ({ value }), else undefined: no load, no wait. */
  peek(key: K): { value: V } | undefined {
    const hit = this.entries.get(key);
    if (!hit || this.now() - hit.at >= this.ttlMs) return undefined;
    // Most recently used: to the end.
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit;
  }

  /** The cached value, or what load gives (cached then). */
  async get(key: K, load: () => Promise<V>): Promise<V> {
    const hit = this.entries.get(key);
    const now = this.now();
    this.entries.delete(key);
    if (hit && now - hit.at < this.ttlMs) {
      this.entries.set(key, hit);
      return hit.value;
    }
    const value = await load();
    this.entries.set(key, { at: now, value });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
    return value;
  }
}
