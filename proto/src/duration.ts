// Durations in ns as Go/CEL write them, exactly: how LIMITS' bounds and
// defaults appear in the IrqTrace API and the CLI (1us, 60s, 1ms).
const UNITS: readonly [string, bigint][] = [
  ['s', 1_000_000_000n],
  ['ms', 1_000_000n],
  ['us', 1_000n],
  ['ns', 1n],
];

/** ns in the largest unit that holds it whole: 1000000n -> '1ms', 1500000n -> '1500us'. */
export function durationText(ns: bigint): string {
  if (ns < 0n) throw new RangeError(`${ns} ns is negative`);
  const [unit, size] = UNITS.find(([, s]) => ns % s === 0n && ns >= s) ?? ['s', 1_000_000_000n];
  return `${ns / size}${unit}`;
}
