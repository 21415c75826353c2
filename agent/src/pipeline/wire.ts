// A protobuf wire writer for the hot path: bytes go straight into one growing
// buffer. protobufjs's Writer queues an object per field and copies them all
// at finish(); at 200,000 events a second that queue was the largest cost of
// encoding. A nested message reserves room for its length and moves its bytes
// only in the rare case the length needs another byte. The output is the
// canonical encoding, byte for byte what protobufjs writes.

/** A uint64 as protobufjs hands it out: Long (low/high halves) or a number. */
export type Uint64Like = number | { low: number; high: number };

function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

export class WireWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialBytes = 16 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  get length(): number {
    return this.pos;
  }

  /** The bytes written, copied out; the writer starts over. */
  finish(): Uint8Array {
    const out = Buffer.from(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return out;
  }

  private ensure(more: number): void {
    if (this.pos + more <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + more));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  /** A field's tag (number << 3 | wire type: @irqtrace/proto's TAGS). */
  tag(tag: number): this {
    return this.uint32(tag);
  }

  /** An unsigned 32-bit varint. */
  uint32(value: number): this {
    this.ensure(5);
    let v = value >>> 0;
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
    return this;
  }

  /** int32 and enums: a negative value takes ten bytes, as protobuf says. */
  int32(value: number): this {
    return value < 0 ? this.uint64({ low: value | 0, high: -1 }) : this.uint32(value);
  }

  bool(value: boolean): this {
    return this.uint32(value ? 1 : 0);
  }

  uint64(value: Uint64Like): this {
    let low: number;
    let high: number;
    if (typeof value === 'number') {
      low = value >>> 0;
      high = Math.floor(value / 2 ** 32) >>> 0;
    } else {
      low = value.low >>> 0;
      high = value.high >>> 0;
    }
    if (high === 0) return this.uint32(low);
    this.ensure(10);
    while (high) {
      this.buf[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    return this.uint32(low);
  }

  /** A UTF-8 string with its length. */
  string(value: string): this {
    // Up to 42 chars fit 126 bytes at most: write first, fill the one-byte length in after.
    if (value.length <= 42) {
      this.ensure(1 + 3 * value.length);
      const at = this.pos++;
      const n = this.buf.write(value, this.pos, 'utf8');
      this.buf[at] = n;
      this.pos += n;
      return this;
    }
    const n = Buffer.byteLength(value, 'utf8');
    this.uint32(n);
    this.ensure(n);
    this.pos += this.buf.write(value, this.pos, 'utf8');
    return this;
  }

  /** Bytes with their length (a bytes field, or a message encoded already). */
  bytes(value: Uint8Array): this {
    this.uint32(value.length);
    return this.raw(value);
  }

  /** Bytes that are whole fields already: no length. */
  raw(value: Uint8Array): this {
    this.ensure(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
    return this;
  }

  /**
   * Starts a nested message; returns the mark to give end(). Room for a
   * length of `expected` bytes is kept now.
   */
  begin(expected = 127): number {
    const reserve = varintSize(expected);
    this.ensure(reserve);
    this.pos += reserve;
    return this.pos * 8 + reserve;
  }

  /** Ends the nested message begun at mark: writes its length before it. */
  end(mark: number): this {
    const reserved = mark & 7;
    const start = (mark - reserved) / 8;
    const length = this.pos - start;
    const need = varintSize(length);
    if (need !== reserved) {
      this.ensure(need - reserved);
      this.buf.copyWithin(start + need - reserved, start, this.pos);
      this.pos += need - reserved;
    }
    // The length goes where the room was kept, whatever its size now.
    let at = start - reserved;
    let v = length;
    while (v > 0x7f) {
      this.buf[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[at] = v;
    return this;
  }
}
