// The record queue: in order, bounded, errors counted and the rest kept going.
import { describe, expect, it } from 'vitest';
import { SerialQueue } from '../../agent/src/pipeline/serial_queue.js';

describe('the serial queue', () => {
  it('does items in order, at once when nothing waits and after the waiting one otherwise', async () => {
    const done: number[] = [];
    const gates = new Map<number, () => void>();
    const q = new SerialQueue<number>((n) => {
      if (n % 3 !== 0) {
        done.push(n);
        return;
      }
      return new Promise<void>((resolve) => gates.set(n, () => { done.push(n); resolve(); }));
    }, () => {});
    q.push(1);
    expect(done).toEqual([1]);
    q.push(3);
    q.push(4);
    q.push(6);
    q.push(7);
    // 3 waits: 4, 6 and 7 wait behind it.
    expect(done).toEqual([1]);
    expect(q.pending).toBe(4);
    gates.get(3)?.();
    await new Promise((r) => setImmediate(r));
    expect(done).toEqual([1, 3, 4]);
    gates.get(6)?.();
    await q.drained();
    expect(done).toEqual([1, 3, 4, 6, 7]);
    expect(q.pending).toBe(0);
    q.push(8);
    expect(done).toEqual([1, 3, 4, 6, 7, 8]);
  });

  it('refuses past its bound and reports errors without stopping', async () => {
    const errors: unknown[] = [];
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    const seen: number[] = [];
    const q = new SerialQueue<number>((n) => {
      seen.push(n);
      if (n === 0) return held;
      if (n === 2) throw new Error('two');
      if (n === 3) return Promise.reject(new Error('three'));
    }, (err) => errors.push(err), 3);
    expect([q.push(0), q.push(1), q.push(2), q.push(3)]).toEqual([true, true, true, false]);
    release();
    await q.drained();
    expect(seen).toEqual([0, 1, 2]);
    expect(q.push(3)).toBe(true);
    await q.drained();
    expect(errors.map((e) => (e as Error).message)).toEqual(['two', 'three']);
    expect(seen).toEqual([0, 1, 2, 3]);
  });
});
