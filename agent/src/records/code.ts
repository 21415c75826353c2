// Where a section happened, interned: the sites and stack of a record are one
// shared object for every record with the same bytes. A storm of violations
// comes from a few code paths, so each path is decoded (and, downstream,
// symbolized and encoded) once instead of once per record.
import { RECORD } from './layout.js';

export interface CodeLocation {
  readonly disableIp: bigint;
  readonly disableParentIp: bigint;
  readonly enableIp: bigint;
  readonly enableParentIp: bigint;
  /** Kernel stack, innermost first. */
  readonly frames: readonly bigint[];
}

const r = RECORD.fields;
/** The sites: disable_ip .. enable_parent_ip, contiguous. */
const SITES_START = r.disable_ip.offset;
const SITES_END = r.enable_parent_ip.offset + r.enable_parent_ip.size;

export class CodeInterner {
  private readonly known = new Map<string, CodeLocation>();

  /** maxEntries bounds memory: the table starts over when it is full. */
  constructor(private readonly maxEntries = 4096) {}

  /** The code location of the record at buf[at, at + size). */
  intern(buf: Buffer, at: number, size: number): CodeLocation {
    // Sites and stack only: the fields between them (context, edges, the lock's address) vary
    // between the records of one code path (a per-object lock) and are not part of it.
    const key = buf.toString('latin1', at + SITES_START, at + SITES_END) + buf.toString('latin1', at + RECORD.size, at + size);
    let code = this.known.get(key);
    if (!code) {
      if (this.known.size >= this.maxEntries) this.known.clear();
      code = decodeCode(buf, at, size);
      this.known.set(key, code);
    }
    return code;
  }

  get size(): number {
    return this.known.size;
  }
}

function decodeCode(buf: Buffer, at: number, size: number): CodeLocation {
  const frames: bigint[] = [];
  for (let p = at + RECORD.size; p < at + size; p += 8) frames.push(buf.readBigUInt64LE(p));
  return Object.freeze({
    disableIp: buf.readBigUInt64LE(at + r.disable_ip.offset),
    disableParentIp: buf.readBigUInt64LE(at + r.disable_parent_ip.offset),
    enableIp: buf.readBigUInt64LE(at + r.enable_ip.offset),
    enableParentIp: buf.readBigUInt64LE(at + r.enable_parent_ip.offset),
    frames: Object.freeze(frames),
  });
}
