// Decodes the uapi item stream as it arrives in chunks of any size: whole
// items out, a partial one kept for the next chunk. Only the remainder is
// ever copied, so a large read costs one pass.
import { DecodeError, decodeItems } from './decode.js';
import type { Item } from './decode.js';

export class ItemStreamDecoder {
  private pending: Buffer = Buffer.alloc(0);
  /** Bytes decoded so far, for error positions across chunks. */
  private offset = 0;

  /** The whole items completed by chunk; throws DecodeError on a malformed one. */
  push(chunk: Buffer): Item[] {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let decoded: { items: Item[]; consumed: number };
    try {
      decoded = decodeItems(buf);
    } catch (err) {
      if (err instanceof DecodeError) throw new DecodeError(err.message.replace(/ at byte \d+$/, ''), this.offset + err.offset);
      throw err;
    }
    this.offset += decoded.consumed;
    // Copy the remainder: chunk may be a view into a buffer its owner reuses.
    this.pending = Buffer.from(buf.subarray(decoded.consumed));
    return decoded.items;
  }

  /** Bytes of an item still incomplete. */
  get buffered(): number {
    return this.pending.length;
  }

  /** At the end of the stream: a partial item left over is an error. */
  end(): void {
    if (this.pending.length) throw new DecodeError(`stream ended inside an item (${this.pending.length} bytes)`, this.offset);
  }
}
