// The CLI's text: durations, histogram bars, table rows.
import { describe, expect, it } from 'vitest';
import { Backend, Kind, Method } from '@irqtrace/agent';
import type { HistItem } from '@irqtrace/agent';
import { formatEnds, formatHistogram, formatLock, formatNs, formatRow, VIOLATION_HEADER } from '../../agent/src/cli/format.js';

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
    const row = formatRow({ time: '12:00:01.250', kind: 'irqs-off', cpu: '1', duration: '5.01 ms', ends: '±1.00 ms/±1.00 ms', task: 'irqburn/147', where: '-', lock: 'tasklist_lock', frames: 'irqburn_irqs_off < selftest_write' });
    expect(row.indexOf('5.01 ms') + '5.01 ms'.length).toBe(header.indexOf('DURATION') + 'DURATION'.length);
    expect(row.indexOf('±1.00 ms')).toBe(header.indexOf('ENDS'));
    expect(row.indexOf('irqburn/147')).toBe(header.indexOf('TASK'));
    expect(row.indexOf('tasklist_lock')).toBe(header.indexOf('LOCK'));
    expect(row.indexOf('irqburn_irqs_off')).toBe(header.indexOf('TOP FRAMES'));
  });

  it('says of each end whether it is exact or within the error bound', () => {
    const ms = 1_000_000n;
    const edge = (exact: boolean) => ({ exact });
    expect(formatEnds({ method: 'METHOD_EXACT', start: edge(true), end: edge(true), errorNs: 0n })).toBe('exact/exact');
    expect(formatEnds({ method: 'METHOD_SAMPLED', start: edge(false), end: edge(true), errorNs: ms })).toBe('±1.00 ms/exact');
    expect(formatEnds({ method: 'METHOD_HYBRID', start: edge(true), end: edge(false), errorNs: 500_000n })).toBe('exact/±500.0 µs');
    // A stored edge with its defaults left out (exact: false) is a bound.
    expect(formatEnds({ method: 'METHOD_HYBRID', start: {}, end: edge(true), errorNs: ms })).toBe('±1.00 ms/exact');
    // Events of an agent from before the edges: what their method always gave, else not known.
    expect(formatEnds({ method: 'METHOD_EXACT', errorNs: 0n })).toBe('exact/exact');
    expect(formatEnds({ method: 'METHOD_SAMPLED', start: null, end: null, errorNs: ms })).toBe('±1.00 ms/exact');
    expect(formatEnds({ method: 'METHOD_HYBRID', errorNs: ms })).toBe('?/?');
  });

  it('names the lock that opened a section by its symbol, else its address', () => {
    expect(formatLock({ address: 0xffffffff82a05040n, symbol: 'tasklist_lock', offset: 0n, module: '' })).toBe('tasklist_lock');
    expect(formatLock({ address: 0xffffffffc0004010n, symbol: 'nvme_lock', offset: 0x10n, module: 'nvme' })).toBe('nvme_lock+0x10 [nvme]');
    expect(formatLock({ address: 0xffff888003a1c2c0n })).toBe('0xffff888003a1c2c0');
    expect(formatLock(null)).toBe('-');
  });
});
