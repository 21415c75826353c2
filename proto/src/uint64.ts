// uint64 fields (addresses, CLOCK_MONOTONIC ns) do not fit a JS number past
// 2^53, so protobufjs hands them out as Long (or number when small). These
// helpers convert at the edges; application code works with bigint.
import Long from 'long';

export function toBigInt(value: Long | number | string | null | undefined): bigint {
  if (value === null || value === undefined) return 0n;
  if (typeof value === 'number') return BigInt(value);
  if (typeof value === 'string') return BigInt(value);
  return BigInt.asUintN(64, (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0));
}

export function toLong(value: bigint | number): Long {
  const v = BigInt.asUintN(64, BigInt(value));
  return new Long(Number(v & 0xffffffffn) | 0, Number(v >> 32n) | 0, true);
}
