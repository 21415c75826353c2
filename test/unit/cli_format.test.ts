// The CLI's text: durations, histogram bars, table rows.
import { describe, expect, it } from 'vitest';
import { Backend, Kind, Method } from '@irqtrace/agent';
import type { HistItem } from '@irqtrace/agent';
import { formatHistogram, formatNs, formatRow, VIOLATION_HEADER } from '../../agent/src/cli/format.js';

describe('CLI formatting', () => {
  it('prints durations with sensible units', () => {
    expect(formatNs(950n)).toBe('950 ns');
    expect(formatNs(1_500)).toBe('1.50 µs');
    expect(formatNs(512_300n)).toBe('512.3 µs');
    expect(formatNs(5_012_345n)).toBe('5.01 ms');
    expect(formatNs(12_500_000_000n)).toBe('12.50 s');
  });

  it('draws a log2 histogram from its first to its last non-empty bucket', () => {
    const buckets = Array.from({ length: 64 }, () => 0n);
    buckets[10] = 400n;
    buckets[12] = 100n;
    buckets[22] = 1n;
    const h: HistItem = { type: 'hist', kind: Kind.IrqsOff, method: Method.Exact, backend: Backend.Kmod, cpu: 1, irq: 0, count: 501n, sumNs: 501_000_000n, maxNs: 5_000_000n, buckets };
    const text = formatHistogram(h, undefined, 20).split('\n');
    expect(text[0]).toBe('irqs-off CPU 1 (exact): 501 sections, mean 1.00 ms, max 5.00 ms');
    expect(text).toHaveLength(2 + 13);
    expect(text[2]).toBe('    1 µs .. 2 µs             400  |********************|');
    expect(text[4]).toBe('    4 µs .. 8 µs             100  |*****               |');
    expect(text.at(-1)).toBe('    4 ms .. 8 ms               1  |                    |');
    expect(formatHistogram({ ...h, count: 0n })).toBe('');
  });

  it('aligns table rows under the header', () => {
    const header = formatRow(VIOLATION_HEADER);
    const row = formatRow({ time: '12:00:01.250', kind: 'irqs-off', cpu: '1', duration: '5.01 ms', task: 'irqburn/147', where: '-', frames: 'irqburn_irqs_off < selftest_write' });
    expect(row.indexOf('5.01 ms') + '5.01 ms'.length).toBe(header.indexOf('DURATION') + 'DURATION'.length);
    expect(row.indexOf('irqburn/147')).toBe(header.indexOf('TASK'));
  });
});
