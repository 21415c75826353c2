// Durations as the IrqTrace API writes them: Go/CEL syntax (500us, 1.5ms,
// 1h30m), the syntax the CRD's CEL rules check with duration().
const UNIT_NS: Record<string, bigint> = { ns: 1n, us: 1_000n, µs: 1_000n, ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n };

/** Nanoseconds of a duration like 500us or 1h30m; throws on anything else (the API server refused it already). */
export function durationNs(text: string): bigint {
  const parts = [...text.matchAll(/(\d+)(?:\.(\d+))?(ns|us|µs|ms|s|m|h)/g)];
  if (!parts.length || parts.map((p) => p[0]).join('') !== text) throw new Error(`'${text}' is not a duration like 500us, 1.5ms or 1h30m`);
  let total = 0n;
  for (const [, whole = '0', frac = '', unit = 'ns'] of parts) {
    const scale = 10n ** BigInt(frac.length);
    // Below a nanosecond is dropped, as Go's time.ParseDuration does.
    total += ((BigInt(whole) * scale + BigInt(frac || '0')) * (UNIT_NS[unit] ?? 1n)) / scale;
  }
  return total;
}

/** A duration in the largest unit that keeps three significant digits: 512µs, 1.50ms, 2.3s. */
export function formatNs(ns: bigint | number): string {
  const n = Number(ns);
  if (n < 1_000) return `${n}ns`;
  const [value, unit] = n < 1e6 ? [n / 1e3, 'µs'] : n < 1e9 ? [n / 1e6, 'ms'] : [n / 1e9, 's'];
  return `${value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)}${unit}`;
}
