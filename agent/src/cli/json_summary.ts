// `irqtrace record --json`: after the events, each histogram and one closing summary, one JSON
// object per line like the events, told apart by their "type" (an event has none). 64-bit counts
// and nanoseconds are strings, as in the events.
import { METHOD_NAMES } from '../config/kernel_config.js';
import type { HistItem } from '../records/decode.js';
import { Kind, Method } from '../records/layout.js';
import { KIND_NAMES } from './format.js';

export interface HistogramJson {
  type: 'histogram';
  kind: string;
  /** irqs-off and softirqs-off: per CPU; irq-line: per IRQ. */
  cpu?: number;
  irq?: number;
  method: string;
  count: string;
  sumNs: string;
  maxNs: string;
  /** Sampled: the timer samples the CPU took (its sections are of these). */
  samples?: string;
  /** The non-empty log2 buckets: [fromNs, toNs) and how many sections. */
  buckets: { fromNs: string; toNs: string; count: string }[];
}

/** One histogram of the kernel side, or undefined when it counted nothing. */
export function histogramJson(h: HistItem, samples?: bigint): HistogramJson | undefined {
  if (h.count === 0n) return undefined;
  return {
    type: 'histogram',
    kind: KIND_NAMES[h.kind],
    ...(h.kind === Kind.IrqLine ? { irq: h.irq } : { cpu: h.cpu }),
    method: METHOD_NAMES[h.method],
    count: String(h.count),
    sumNs: String(h.sumNs),
    maxNs: String(h.maxNs),
    ...(h.method === Method.Sampled && samples !== undefined ? { samples: String(samples) } : {}),
    buckets: h.buckets.flatMap((n, i) => (n > 0n ? [{ fromNs: String(2n ** BigInt(i)), toNs: String(2n ** BigInt(i + 1)), count: String(n) }] : [])),
  };
}

export interface SummaryJson {
  type: 'summary';
  /** Where the events came from: this command's kernel side, or the node agent's. */
  source: 'kernel' | 'agent';
  backend?: string;
  method?: string;
  seconds: number;
  violationsShown: number;
  /** Sections lost, by where: kernel (ring full, probe re-entered), irqtrace (its queues), reader (a slow reader of the agent). */
  lost: Record<string, string>;
}

export function summaryJson(s: Omit<SummaryJson, 'type'>): SummaryJson {
  return { type: 'summary', ...s };
}
