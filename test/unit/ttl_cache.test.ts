import { describe, expect, it } from 'vitest';
import { TtlCache } from '../../agent/src/index.js';

/** A cache over a loader that counts its loads and can be told to fail. */
function counted(o: { maxEntries?: number; staleMs?: number } = {}) {
  let now = 0;
  const loads: string[] = [];
  let fail = false;
  const cache = new TtlCache<string, string>(
    async (key) => {
      loads.push(key);
      await Promise.resolve();
      if (fail) throw new Error(`cannot load ${key}`);
      return `${key}@${now}`;
    },
    { maxEntries: o.maxEntries ?? 10, ttlMs: 1000, staleMs: o.staleMs ?? 0, now: () => now },
  );
  return {
    cache,
    loads,
    at: (t: number) => { now = t; },
    failing: (f: boolean) => { fail = f; },
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('TtlCache', () => {
  it('loads once however many ask at a time, then serves until the ttl', async () => {
    const c = counted();
    expect(c.cache.peek('a')).toBeUndefined();
    expect(await Promise.all([c.cache.get('a'), c.cache.get('a')])).toEqual(['a@0', 'a@0']);
    c.at(999);
    expect(c.cache.peek('a')).toMatchObject({ value: 'a@0' });
    expect(await c.cache.get('a')).toBe('a@0');
    c.at(1000);
    expect(c.cache.peek('a')).toBeUndefined();
    expect(await c.cache.get('a')).toBe('a@1000');
    expect(c.loads).toEqual(['a', 'a']);
  });

  it('serves a stale value within staleMs while one reload runs, then the new one', async () => {
    const c = counted({ staleMs: 500 });
    await c.cache.get('a');
    c.at(1200);
    expect(c.cache.peek('a')).toMatchObject({ value: 'a@0' });
    expect(c.cache.peek('a')).toMatchObject({ value: 'a@0' });
    await settle();
    expect(c.loads).toEqual(['a', 'a']);
    expect(c.cache.peek('a')).toMatchObject({ value: 'a@1200' });
    // Past ttl + staleMs: not served at all.
    c.at(1200 + 1500);
    expect(c.cache.peek('a')).toBeUndefined();
    expect(c.loads).toHaveLength(2);
  });

  it('drops a stale value whose reload failed, and counts it', async () => {
    const c = counted({ staleMs: 500 });
    await c.cache.get('a');
    c.failing(true);
    c.at(1100);
    expect(c.cache.peek('a')).toMatchObject({ value: 'a@0' });
    await settle();
    expect(c.cache.reloadFailures).toBe(1);
    expect(c.cache.peek('a')).toBeUndefined();
    await expect(c.cache.get('a')).rejects.toThrow('cannot load a');
    c.failing(false);
    expect(await c.cache.get('a')).toBe('a@1100');
  });

  it('keeps at most maxEntries, evicting the one loaded longest ago', async () => {
    const c = counted({ maxEntries: 2, staleMs: 5000 });
    await c.cache.get('a');
    c.at(10);
    await c.cache.get('b');
    // a is reloaded (stale): now b is the oldest load.
    c.at(1005);
    c.cache.peek('a');
    await settle();
    await c.cache.get('c');
    expect(c.cache.size).toBe(2);
    expect(c.cache.peek('a')).toMatchObject({ value: 'a@1005' });
    expect(c.cache.peek('b')).toBeUndefined();
    expect(c.cache.peek('c')).toMatchObject({ value: 'c@1005' });
  });
});
