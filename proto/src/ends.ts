// How exact each end of a section is, from an event's wire fields: one rule for
// every reader of events (the CLI's ENDS column, the IrqTrace status).

/** An event's timing fields: its method (the wire enum's name), start and end edges, error bound. */
export interface EventEnds {
  method: string;
  start?: { exact?: boolean | null } | null;
  end?: { exact?: boolean | null } | null;
  errorNs: bigint;
}

/** Whether one end is exact: its edge says; an event without edges (an older agent's), its method. */
export function endExact(edge: { exact?: boolean | null } | null | undefined, method: string, start: boolean): boolean | undefined {
  if (edge) return edge.exact ?? false;
  if (method === 'METHOD_EXACT') return true;
  // Sampled: the start within one period before the timer's expiry, the end at its late interrupt.
  if (method === 'METHOD_SAMPLED') return !start;
  return undefined;
}

/** "exact/exact", "±1.00 ms/exact": the start's and the end's timing, exact or within the error bound (in formatNs's words). */
export function endsText(e: EventEnds, formatNs: (ns: bigint) => string): string {
  const one = (exact: boolean | undefined): string => (exact === undefined ? '?' : exact ? 'exact' : `±${formatNs(e.errorNs)}`);
  return `${one(endExact(e.start, e.method, true))}/${one(endExact(e.end, e.method, false))}`;
}
