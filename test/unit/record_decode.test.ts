// The agent's decoder of the uapi stream: exact on well-formed items,
// a DecodeError (never another exception, never a hang) on anything else.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ABI_VERSION, COUNTERS, DecodeError, Edge, HIST, ItemStreamDecoder, Kind, MAGIC, Method, RECORD, RecordFlag, decodeAll, decodeItems } from '@irqtrace/agent';

function record(nrFrames: number, fill: Partial<Record<'pid' | 'cpu', number>> = {}): Buffer {
  const b = Buffer.alloc(RECORD.size + 8 * nrFrames);
  const f = RECORD.fields;
  b.writeUInt32LE(MAGIC.record, 0);
  b.writeUInt16LE(ABI_VERSION, 4);
  b.writeUInt16LE(b.length, 6);
  b.writeUInt8(Kind.IrqLine, f.kind.offset);
  b.writeUInt8(Method.Exact, f.method.offset);
  b.writeUInt8(1, f.backend.offset);
  b.writeUInt16LE(fill.cpu ?? 3, f.cpu.offset);
  b.writeUInt16LE(nrFrames, f.nr_frames.offset);
  b.writeUInt32LE(24, f.irq.offset);
  b.writeBigUInt64LE(2n ** 63n + 7n, f.start_ns.offset);
  b.writeBigUInt64LE(1_234_567n, f.duration_ns.offset);
  b.writeUInt32LE(fill.pid ?? 4242, f.pid.offset);
  b.write('irqburn', f.comm.offset, 'latin1');
  b.write('kworker/1:1H-kblockd', f.enable_comm.offset, 16, 'latin1');
  b.writeBigUInt64LE(0xffffffffc0a01234n, f.disable_ip.offset);
  for (let i = 0; i < nrFrames; i++) b.writeBigUInt64LE(0xffffffff81000000n + BigInt(i), RECORD.size + 8 * i);
  return b;
}

function counters(cpu: number): Buffer {
  const b = Buffer.alloc(COUNTERS.size);
  b.writeUInt32LE(MAGIC.counters, 0);
  b.writeUInt16LE(ABI_VERSION, 4);
  b.writeUInt16LE(b.length, 6);
  b.writeUInt8(2, COUNTERS.fields.backend.offset);
  b.writeUInt32LE(cpu, COUNTERS.fields.cpu.offset);
  b.writeBigUInt64LE(99n, COUNTERS.fields.dropped_ring.offset);
  return b;
}

function hist(): Buffer {
  const b = Buffer.alloc(HIST.size);
  b.writeUInt32LE(MAGIC.hist, 0);
  b.writeUInt16LE(ABI_VERSION, 4);
  b.writeUInt16LE(b.length, 6);
  b.writeUInt8(Kind.IrqsOff, HIST.fields.kind.offset);
  b.writeUInt8(Method.Sampled, HIST.fields.method.offset);
  b.writeUInt8(1, HIST.fields.backend.offset);
  b.writeBigUInt64LE(5n, HIST.fields.buckets.offset + 8 * 17);
  return b;
}

describe('decoding the uapi stream', () => {
  it('decodes records, counters and histograms field by field', () => {
    const items = decodeAll(Buffer.concat([record(3), counters(1), hist(), record(0, { pid: 7, cpu: 0 })]));
    expect(items.map((i) => i.type)).toEqual(['record', 'counters', 'hist', 'record']);
    expect(items[0]).toMatchObject({
      kind: Kind.IrqLine, irq: 24, cpu: 3, pid: 4242, comm: 'irqburn', enableComm: 'kworker/1:1H-kbl',
      startNs: 2n ** 63n + 7n, durationNs: 1_234_567n, disableIp: 0xffffffffc0a01234n,
      frames: [0xffffffff81000000n, 0xffffffff81000001n, 0xffffffff81000002n],
    });
    expect(items[1]).toMatchObject({ type: 'counters', cpu: 1, droppedRing: 99n });
    expect(items[2]).toMatchObject({ type: 'hist', method: Method.Sampled });
    expect(items[2]?.type === 'hist' && items[2].buckets[17]).toBe(5n);
    expect(items[3]).toMatchObject({ pid: 7, frames: [] });
  });

  it('decodes how each end was timed, and the lock that opened the section', () => {
    const b = record(1);
    const f = RECORD.fields;
    b.writeUInt8(Kind.IrqsOff, f.kind.offset);
    b.writeUInt8(Method.Hybrid, f.method.offset);
    b.writeUInt8(RecordFlag.StartExact | RecordFlag.EndExact, f.flags.offset);
    b.writeUInt8(Edge.Lock, f.start_by.offset);
    b.writeUInt8(Edge.Sample, f.end_by.offset);
    b.writeBigUInt64LE(0xffffffff82a05040n, f.lock.offset);
    const [got] = decodeAll(b);
    expect(got).toMatchObject({ method: Method.Hybrid, startBy: Edge.Lock, endBy: Edge.Sample, lock: 0xffffffff82a05040n, frames: [0xffffffff81000000n] });
    // Neither the edges nor the lock are part of the code location that records of one path share.
    const other = Buffer.from(b);
    other.writeBigUInt64LE(0xffff888003a1c2c0n, f.lock.offset);
    other.writeUInt8(Edge.Handler, f.start_by.offset);
    const [x, y] = decodeAll(Buffer.concat([b, other]));
    expect(x?.type === 'record' && y?.type === 'record' && x.code === y.code).toBe(true);
    b.writeUInt8(Edge.Schedule + 1, f.end_by.offset);
    expect(() => decodeAll(b)).toThrow(/invalid edge 6 at byte 0/);
  });

  it('leaves a partial item for the next chunk when streaming', () => {
    const stream = Buffer.concat([record(2), record(5)]);
    const cut = RECORD.size + 16 + 100;
    const first = decodeItems(stream.subarray(0, cut));
    expect(first.items).toHaveLength(1);
    const second = decodeItems(Buffer.concat([stream.subarray(first.consumed, cut), stream.subarray(cut)]));
    expect(second.items).toHaveLength(1);
    expect(() => decodeAll(stream.subarray(0, cut))).toThrow(DecodeError);
  });

  it('names what is wrong with a bad item', () => {
    const wrongMagic = record(0);
    wrongMagic.writeUInt32LE(0xdeadbeef, 0);
    expect(() => decodeAll(wrongMagic)).toThrow(/unknown item magic 0xdeadbeef at byte 0/);
    const future = record(0);
    future.writeUInt16LE(ABI_VERSION + 1, 4);
    expect(() => decodeAll(future)).toThrow(/unsupported ABI version/);
    const lying = record(1);
    lying.writeUInt16LE(9, RECORD.fields.nr_frames.offset);
    expect(() => decodeAll(lying)).toThrow(new RegExp(`record of ${RECORD.size + 8} bytes with 9 frames`));
    const badKind = Buffer.concat([counters(0), record(0)]);
    badKind.writeUInt8(9, COUNTERS.size + RECORD.fields.kind.offset);
    expect(() => decodeAll(badKind)).toThrow(new RegExp(`invalid kind 9 at byte ${COUNTERS.size}`));
  });

  it('never throws anything but DecodeError, whatever the bytes', () => {
    const valid = Buffer.concat([record(4), counters(0), hist()]);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 2048 }),
          // Valid streams with a few bytes flipped reach deeper than random bytes.
          fc.tuple(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat(valid.length))
            .map(([flips, cut]) => {
              const b = Buffer.from(valid);
              for (const [at, v] of flips) b[at] = v;
              return b.subarray(0, cut);
            }),
        ),
        (bytes) => {
          try {
            const { consumed } = decodeItems(Buffer.from(bytes));
            expect(consumed).toBeLessThanOrEqual(bytes.length);
          } catch (err) {
            expect(err).toBeInstanceOf(DecodeError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('streams: any chunking gives the items of the whole', () => {
    const whole = Buffer.concat([record(3), counters(1), hist(), record(0), record(32), counters(7)]);
    const expected = decodeAll(whole);
    fc.assert(
      fc.property(fc.array(fc.nat(whole.length), { maxLength: 12 }), (cuts) => {
        const points = [...new Set([0, ...cuts, whole.length])].sort((a, b) => a - b);
        const decoder = new ItemStreamDecoder();
        const got = [];
        for (let i = 1; i < points.length; i++) got.push(...decoder.push(whole.subarray(points[i - 1], points[i])));
        decoder.end();
        expect(got).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('streams: a bad item ends the stream with its position in the stream', () => {
    const bad = counters(2);
    bad.writeUInt8(7, COUNTERS.fields.backend.offset);
    const decoder = new ItemStreamDecoder();
    expect(decoder.push(record(1))).toHaveLength(1);
    expect(() => decoder.push(bad)).toThrow(new RegExp(`invalid backend 7 at byte ${RECORD.size + 8}$`));
    const cut = new ItemStreamDecoder();
    cut.push(record(2).subarray(0, 50));
    expect(cut.buffered).toBe(50);
    expect(() => { cut.end(); }).toThrow(/stream ended inside an item \(50 bytes\)/);
  });
});
