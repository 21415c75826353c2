// The hot path's wire writer must write exactly what protobufjs writes.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Writer, toLong } from '@irqtrace/proto';
import { WireWriter } from '../../agent/src/pipeline/wire.js';

type Op =
  | { op: 'uint32'; v: number }
  | { op: 'int32'; v: number }
  | { op: 'uint64'; v: bigint }
  | { op: 'bool'; v: boolean }
  | { op: 'string'; v: string }
  | { op: 'bytes'; v: Uint8Array }
  | { op: 'nested'; ops: Op[] };

const scalar: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('uint32' as const), v: fc.nat({ max: 0xffffffff }) }),
  fc.record({ op: fc.constant('int32' as const), v: fc.integer({ min: -0x80000000, max: 0x7fffffff }) }),
  fc.record({ op: fc.constant('uint64' as const), v: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  fc.record({ op: fc.constant('bool' as const), v: fc.boolean() }),
  fc.record({ op: fc.constant('string' as const), v: fc.oneof(fc.string({ maxLength: 60 }), fc.string({ unit: 'grapheme', maxLength: 200 }), fc.string({ minLength: 100, maxLength: 20_000 })) }),
  fc.record({ op: fc.constant('bytes' as const), v: fc.uint8Array({ maxLength: 300 }) }),
);
const ops: fc.Arbitrary<Op[]> = fc.letrec<{ list: Op[]; op: Op }>((tie) => ({
  list: fc.array(tie('op'), { maxLength: 12 }),
  op: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, fc.record({ op: fc.constant('nested' as const), ops: tie('list') })),
})).list;

function viaProtobufjs(w: Writer, list: Op[]): void {
  list.forEach((o, i) => {
    const tag = (type: number): Writer => w.uint32(((i + 1) << 3) | type);
    if (o.op === 'uint32') tag(0).uint32(o.v);
    if (o.op === 'int32') tag(0).int32(o.v);
    if (o.op === 'uint64') tag(0).uint64(toLong(o.v));
    if (o.op === 'bool') tag(0).bool(o.v);
    if (o.op === 'string') tag(2).string(o.v);
    if (o.op === 'bytes') tag(2).bytes(o.v);
    if (o.op === 'nested') {
      tag(2).fork();
      viaProtobufjs(w, o.ops);
      w.ldelim();
    }
  });
}

function viaWire(w: WireWriter, list: Op[], expected: number): void {
  list.forEach((o, i) => {
    const field = i + 1;
    if (o.op === 'uint32') w.tag((field << 3) | 0).uint32(o.v);
    if (o.op === 'int32') w.tag((field << 3) | 0).int32(o.v);
    // Both forms protobufjs hands out: Long, and a number when it is exact.
    if (o.op === 'uint64') w.tag((field << 3) | 0).uint64(o.v < 2n ** 53n && i % 2 ? Number(o.v) : toLong(o.v));
    if (o.op === 'bool') w.tag((field << 3) | 0).bool(o.v);
    if (o.op === 'string') w.tag((field << 3) | 2).string(o.v);
    if (o.op === 'bytes') w.tag((field << 3) | 2).bytes(o.v);
    if (o.op === 'nested') {
      w.tag((field << 3) | 2);
      const mark = w.begin(expected);
      viaWire(w, o.ops, expected);
      w.end(mark);
    }
  });
}

describe('the wire writer', () => {
  it('writes what protobufjs writes, whatever length a nested message was expected to have', () => {
    fc.assert(
      fc.property(ops, fc.constantFrom(0, 127, 128, 16_383, 16_384, 3_000_000), fc.nat({ max: 64 }), (list, expected, initial) => {
        const reference = Writer.create();
        viaProtobufjs(reference, list);
        // A tiny first buffer makes every write grow it.
        const w = new WireWriter(initial + 1);
        viaWire(w, list, expected);
        expect(Buffer.from(w.finish()).toString('hex')).toBe(Buffer.from(reference.finish()).toString('hex'));
        // finish() starts over: the writer is reusable.
        expect(w.length).toBe(0);
      }),
      { numRuns: 400 },
    );
  });

  it('moves a nested message when its length needs more or fewer bytes than kept', () => {
    // Message lengths across each varint size boundary (a bytes field adds 2 to 4 bytes of tag and length).
    const sizes = [0, 1, ...[128, 16_384, 2_097_152].flatMap((edge) => [-6, -5, -4, -3, -2, -1, 0, 1].map((d) => edge + d))];
    for (const size of sizes) {
      const inner: Op[] = [{ op: 'bytes', v: new Uint8Array(size).map((_, i) => i % 251) }];
      for (const expected of [0, 200, 20_000, 3_000_000]) {
        const reference = Writer.create();
        viaProtobufjs(reference, [{ op: 'nested', ops: inner }, { op: 'uint32', v: 7 }]);
        const w = new WireWriter(16);
        viaWire(w, [{ op: 'nested', ops: inner }, { op: 'uint32', v: 7 }], expected);
        expect(Buffer.from(w.finish()).equals(Buffer.from(reference.finish())), `size ${size}, expected ${expected}`).toBe(true);
      }
    }
  });
});
