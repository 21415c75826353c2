// Decodes the uapi item stream as it arrives in chunks of any size: whole
// items out, a partial one kept for the next chunk. Only the remainder is
// ever copied, so a large read costs one pass.
import { DecodeError, decodeItemAt, itemSizeAt } from './decode.js';
import type { Item } from './decode.js';
import { CodeInterner } from './code.js';

export class ItemStreamDecoder {
  private pending: Buffer = Buffer.alloc(0);
  /** Bytes decoded so far, for error positions across chunks. */
  private offset = 0;
  private readonly codes = new CodeInterner();

  /**
   * The whole items completed by chunk, one at a time: each is made only
   * when the consumer takes it, so a consumer that handles an item before
   * taking the next keeps one alive, not a chunk's worth (a chunk's worth
   * alive at every minor GC is what made V8 promote records to the old
   * generation). Throws DecodeError on a malformed item. Take them all
   * before the next call.
   */
  *items(chunk: Buffer): Generator<Item, void, undefined> {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let at = 0;
    try {
      for (let size = itemSizeAt(buf, at); size > 0; size = itemSizeAt(buf, at)) {
        const item = decodeItemAt(buf, at, size, this.codes);
        at += size;
        yield item;
      }
    } catch (err) {
      if (err instanceof DecodeError) throw new DecodeError(err.message.replace(/ at byte \d+$/, ''), this.offset + err.offset);
      throw err;
    } finally {
      this.offset += at;
      // Copy the remainder: chunk may be a view into a buffer its owner reuses.
      this.pending = Buffer.from(buf.subarray(at));
    }
  }

  /** All the whole items completed by chunk. */
  push(chunk: Buffer): Item[] {
    return [...this.items(chunk)];
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
