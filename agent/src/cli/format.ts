// Text for people: durations, the live table of violations, and log2
// histograms drawn as bars (the look of bcc's tools).
import { endsText } from '@irqtrace/proto';
import type { EventEnds } from '@irqtrace/proto';
import type { HistItem } from '../records/decode.js';
import { METHOD_NAMES } from '../config/kernel_config.js';
import { Kind, Method } from '../records/layout.js';

/** 950 -> "950 ns", 1_500 -> "1.50 µs", 5_012_345 -> "5.01 ms". */
export function formatNs(ns: bigint | number): string {
  const n = Number(ns);
  if (n < 1_000) return `${n} ns`;
  if (n < 1_000_000) return `${(n / 1_000).toFixed(n < 10_000 ? 2 : 1)} µs`;
  if (n < 1_000_000_000) return `${(n / 1_000_000).toFixed(n < 10_000_000 ? 2 : 1)} ms`;
  return `${(n / 1_000_000_000).toFixed(2)} s`;
}

/** Lower edge of log2 bucket i, compact: 1 ns .. 512 ms. */
function edge(i: number): string {
  const n = 2 ** i;
  if (n < 1_000) return `${n} ns`;
  if (n < 1_000_000) return `${Math.round(n / 1_000)} µs`;
  if (n < 1_000_000_000) return `${Math.round(n / 1_000_000)} ms`;
  return `${Math.round(n / 1_000_000_000)} s`;
}

export const KIND_NAMES: Record<Kind, string> = {
  [Kind.IrqsOff]: 'irqs-off',
  [Kind.SoftirqsOff]: 'softirqs-off',
  [Kind.IrqLine]: 'irq-line',
};


/**
 * One histogram as a bar chart; empty string when it counted nothing. A sampled one says of how
 * many timer samples its sections are (samples: the CPU's counter).
 */
export function formatHistogram(h: HistItem, samples?: bigint, width = 40): string {
  if (h.count === 0n) return '';
  const first = h.buckets.findIndex((b) => b > 0n);
  const last = h.buckets.length - 1 - [...h.buckets].reverse().findIndex((b) => b > 0n);
  const peak = h.buckets.reduce((a, b) => (b > a ? b : a), 0n);
  const who = h.kind === Kind.IrqLine ? `IRQ ${h.irq}` : `CPU ${h.cpu}`;
  const lines = [
    `${KIND_NAMES[h.kind]} ${who} (${METHOD_NAMES[h.method]}): ${h.count} sections${h.method === Method.Sampled && samples ? ` in ${samples} samples` : ''}, mean ${formatNs(h.sumNs / h.count)}, max ${formatNs(h.maxNs)}`,
    `${'range'.padStart(21)}  ${'count'.padStart(10)}  distribution`,
  ];
  for (let i = first; i <= last; i++) {
    const n = h.buckets[i] ?? 0n;
    const bar = Math.round((Number(n) / Number(peak)) * width);
    lines.push(`${edge(i).padStart(8)} .. ${edge(i + 1).padEnd(8)}  ${String(n).padStart(10)}  |${'*'.repeat(bar).padEnd(width)}|`);
  }
  return lines.join('\n');
}

/** The pod (namespace/name, else UID prefix) or container (id prefix) a task is in, or '-'. */
export function formatWhere(task: { podUid?: string | null; podNamespace?: string | null; podName?: string | null; containerId?: string | null } | undefined): string {
  if (task?.podName) return `${task.podNamespace ?? ''}/${task.podName}`;
  if (task?.podUid) return `pod ${task.podUid.slice(0, 8)}`;
  if (task?.containerId) return `ctr ${task.containerId.slice(0, 12)}`;
  return '-';
}

/** "exact/exact", "±1.00 ms/exact": the start's and the end's timing, exact or within the error bound. */
export function formatEnds(e: EventEnds): string {
  return endsText(e, formatNs);
}

interface FrameParts {
  address?: bigint;
  symbol?: string | null;
  offset?: bigint;
  module?: string | null;
}

/** A symbolized address: its symbol (and offset in it, module), else the address. */
export function formatFrame(frame: FrameParts): string {
  if (!frame.symbol) return `0x${(frame.address ?? 0n).toString(16)}`;
  return `${frame.symbol}${frame.offset ? `+0x${frame.offset.toString(16)}` : ''}${frame.module ? ` [${frame.module}]` : ''}`;
}

/** The lock that opened a section (formatFrame), '-' for none. */
export function formatLock(lock: FrameParts | null | undefined): string {
  return lock ? formatFrame(lock) : '-';
}

export interface ViolationRow {
  time: string;
  kind: string;
  cpu: string;
  duration: string;
  /** formatEnds: each end exact or bounded. */
  ends: string;
  task: string;
  where: string;
  /** formatLock: the lock whose irq-saving call opened the section, or '-'. */
  lock: string;
  frames: string;
}

export const VIOLATION_HEADER: ViolationRow = {
  time: 'TIME', kind: 'KIND', cpu: 'CPU', duration: 'DURATION', ends: 'ENDS', task: 'TASK', where: 'POD/CONTAINER', lock: 'LOCK', frames: 'TOP FRAMES',
};

/** One aligned line of the live table. */
export function formatRow(r: ViolationRow): string {
  return [r.time.padEnd(12), r.kind.padEnd(14), r.cpu.padStart(3), r.duration.padStart(10), r.ends.padEnd(17), r.task.padEnd(24), r.where.padEnd(20), r.lock.padEnd(20), r.frames].join(' ');
}
