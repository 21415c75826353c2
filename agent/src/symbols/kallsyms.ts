// Kernel symbolization from /proc/kallsyms: symbols of the core kernel and of
// modules, sorted once, looked up by binary search. Text symbols (code: stacks,
// sites, handlers) and data symbols (a lock's address: tasklist_lock) are two
// tables, so a code address never resolves to data nor a lock to code.
//
// The tables live in typed arrays and one buffer of names: ~150,000 symbols
// cost ~3 MB of it instead of ~150,000 strings, and parsing the bytes in
// place leaves almost no garbage behind (the parse runs at start and on every
// module change, and its garbage would be the agent's idle RSS). Addresses
// are float64 offsets from a table's lowest one: kernel and module text (and
// data) span far less than 2^53 bytes, so they are exact and the search
// compares doubles.
export interface Symbol {
  name: string;
  /** Offset of the address from the symbol's start. */
  offset: bigint;
  /** Module name, empty for the core kernel. */
  module: string;
}

const NEWLINE = 0x0a;
const SPACE = 0x20;
const TAB = 0x09;
const TWO_32 = 2 ** 32;

/** Value of a hex digit, or -1. */
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** Growable typed arrays for the scan. */
class Columns {
  hi = new Uint32Array(1024);
  lo = new Uint32Array(1024);
  nameStart = new Uint32Array(1024);
  nameLength = new Uint16Array(1024);
  module = new Uint16Array(1024);
  length = 0;

  push(hi: number, lo: number, nameStart: number, nameLength: number, module: number): void {
    if (this.length === this.hi.length) this.grow();
    const i = this.length++;
    this.hi[i] = hi;
    this.lo[i] = lo;
    this.nameStart[i] = nameStart;
    this.nameLength[i] = nameLength;
    this.module[i] = module;
  }

  private grow(): void {
    const n = this.hi.length * 2;
    const widen = <T extends Uint32Array | Uint16Array>(a: T, make: (n: number) => T): T => { const b = make(n); b.set(a); return b; };
    this.hi = widen(this.hi, (k) => new Uint32Array(k));
    this.lo = widen(this.lo, (k) => new Uint32Array(k));
    this.nameStart = widen(this.nameStart, (k) => new Uint32Array(k));
    this.nameLength = widen(this.nameLength, (k) => new Uint16Array(k));
    this.module = widen(this.module, (k) => new Uint16Array(k));
  }
}

/** One sorted table of symbols; their names are in the Kallsyms' shared buffer. */
class SymbolTable {
  private constructor(
    private readonly baseHi: number,
    private readonly baseLo: number,
    readonly offsets: Float64Array,
    readonly nameStart: Uint32Array,
    readonly nameLength: Uint16Array,
    /** Index into the modules; 0 is the core kernel (''). */
    readonly moduleOf: Uint16Array,
  ) {}

  static build(cols: Columns): SymbolTable {
    const n = cols.length;
    let baseHi = 0xffffffff;
    let baseLo = 0xffffffff;
    for (let i = 0; i < n; i++) {
      const hi = cols.hi[i] ?? 0;
      const lo = cols.lo[i] ?? 0;
      if (hi < baseHi || (hi === baseHi && lo < baseLo)) {
        baseHi = hi;
        baseLo = lo;
      }
    }
    const unsorted = new Float64Array(n);
    for (let i = 0; i < n; i++) unsorted[i] = ((cols.hi[i] ?? 0) - baseHi) * TWO_32 + ((cols.lo[i] ?? 0) - baseLo);
    // Stable: of symbols at one address the first listed wins, as in the kernel's own lookup.
    const order = Uint32Array.from({ length: n }, (_, i) => i).sort((a, b) => (unsorted[a] ?? 0) - (unsorted[b] ?? 0) || a - b);
    const offsets = new Float64Array(n);
    const nameStart = new Uint32Array(n);
    const nameLength = new Uint16Array(n);
    const moduleOf = new Uint16Array(n);
    for (let k = 0; k < n; k++) {
      const i = order[k] ?? 0;
      offsets[k] = unsorted[i] ?? 0;
      nameStart[k] = cols.nameStart[i] ?? 0;
      nameLength[k] = cols.nameLength[i] ?? 0;
      moduleOf[k] = cols.module[i] ?? 0;
    }
    return new SymbolTable(n ? baseHi : 0, n ? baseLo : 0, offsets, nameStart, nameLength, moduleOf);
  }

  get size(): number {
    return this.offsets.length;
  }

  /** Offset of address from the table's lowest symbol, or -1 below it. */
  offsetOf(address: bigint): number {
    const hi = Number(address >> 32n);
    const lo = Number(address & 0xffffffffn);
    if (hi < this.baseHi || (hi === this.baseHi && lo < this.baseLo)) return -1;
    return (hi - this.baseHi) * TWO_32 + (lo - this.baseLo);
  }

  /** Index of the symbol containing the offset, or -1 below the first symbol. */
  find(target: number): number {
    if (target < 0) return -1;
    let lo = 0;
    let hi = this.offsets.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((this.offsets[mid] ?? Infinity) <= target) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    // Aliases (several symbols at one address): the first listed, as the kernel's own lookup does.
    while (found > 0 && this.offsets[found - 1] === this.offsets[found]) found--;
    return found;
  }

  /** The address of symbol i. */
  address(i: number): bigint {
    return ((BigInt(this.baseHi) << 32n) | BigInt(this.baseLo)) + BigInt(this.offsets[i] ?? 0);
  }
}

export class Kallsyms {
  private constructor(
    private readonly text: SymbolTable,
    private readonly data: SymbolTable,
    /** Names, latin1, back to back; a symbol's is at nameStart for nameLength bytes. */
    private readonly names: Buffer,
    private readonly modules: string[],
  ) {}

  /**
   * Parses kallsyms ("ffffffff81000000 T _stext", "... t fn\t[module]").
   * Text symbols (t T w W) and data symbols (d D b B) are kept, each in its
   * table; other lines, those that read as address 0 (kptr_restrict without
   * CAP_SYSLOG), data symbols below the kernel half of the address space (x86's
   * per-CPU offsets, not addresses) and malformed lines are skipped.
   */
  static parse(input: Buffer | string): Kallsyms {
    const parser = new KallsymsParser();
    parser.push(typeof input === 'string' ? Buffer.from(input, 'latin1') : input);
    return parser.finish();
  }

  /** Parses a stream of chunks (each may be reused by its producer once push returns). */
  static async fromChunks(chunks: AsyncIterable<Buffer>): Promise<Kallsyms> {
    const parser = new KallsymsParser();
    for await (const chunk of chunks) parser.push(chunk);
    return parser.finish();
  }

  /** @internal */
  static build(text: Columns, data: Columns, names: Buffer, modules: string[]): Kallsyms {
    // Own the names' memory: the scratch buffer was sized for the worst case.
    return new Kallsyms(SymbolTable.build(text), SymbolTable.build(data), Buffer.from(names), modules);
  }

  /** Text symbols. */
  get size(): number {
    return this.text.size;
  }

  /** Data symbols. */
  get dataSize(): number {
    return this.data.size;
  }

  /** The text symbol containing address (code: a stack frame, a site), or undefined below the first symbol. */
  lookup(address: bigint): Symbol | undefined {
    const target = this.text.offsetOf(address);
    return this.symbol(this.text, this.text.find(target), target);
  }

  /**
   * The data symbol containing address (a static variable, such as a lock), or undefined: below
   * the first one (allocated memory: the direct map, vmalloc), or past it into code, which ends it.
   */
  lookupData(address: bigint): Symbol | undefined {
    const target = this.data.offsetOf(address);
    const i = this.data.find(target);
    if (i < 0) return undefined;
    const code = this.text.find(this.text.offsetOf(address));
    if (code >= 0 && this.text.address(code) > this.data.address(i)) return undefined;
    return this.symbol(this.data, i, target);
  }

  private symbol(table: SymbolTable, i: number, target: number): Symbol | undefined {
    if (i < 0) return undefined;
    const start = table.nameStart[i] ?? 0;
    return {
      name: this.names.toString('latin1', start, start + (table.nameLength[i] ?? 0)),
      offset: BigInt(target - (table.offsets[i] ?? 0)),
      module: this.modules[table.moduleOf[i] ?? 0] ?? '',
    };
  }

  /** "name+0xoff [module]" or the raw address. */
  format(address: bigint): string {
    const s = this.lookup(address);
    if (!s) return `0x${address.toString(16)}`;
    return `${s.name}+0x${s.offset.toString(16)}${s.module ? ` [${s.module}]` : ''}`;
  }
}

/** Scans kallsyms lines as they arrive; a line split across chunks is carried over. */
class KallsymsParser {
  private readonly text = new Columns();
  private readonly data = new Columns();
  private names = Buffer.allocUnsafe(1 << 20);
  private namesUsed = 0;
  private readonly modules = [''];
  private readonly moduleIndex = new Map<string, number>([['', 0]]);
  private carry: Buffer | undefined;

  push(chunk: Buffer): void {
    let from = 0;
    if (this.carry) {
      const nl = chunk.indexOf(NEWLINE);
      if (nl < 0) {
        this.carry = Buffer.concat([this.carry, chunk]);
        return;
      }
      const line = Buffer.concat([this.carry, chunk.subarray(0, nl)]);
      this.carry = undefined;
      this.lines(line, 0, line.length);
      from = nl + 1;
    }
    const last = chunk.lastIndexOf(NEWLINE);
    if (last < from) {
      if (from < chunk.length) this.carry = Buffer.from(chunk.subarray(from));
      return;
    }
    this.lines(chunk, from, last);
    if (last + 1 < chunk.length) this.carry = Buffer.from(chunk.subarray(last + 1));
  }

  finish(): Kallsyms {
    if (this.carry) this.lines(this.carry, 0, this.carry.length);
    this.carry = undefined;
    return Kallsyms.build(this.text, this.data, this.names.subarray(0, this.namesUsed), this.modules);
  }

  /** Parses the lines in text[from, to). */
  private lines(text: Buffer, from: number, to: number): void {
    let at = from;
    while (at < to) {
      let end = text.indexOf(NEWLINE, at);
      if (end < 0 || end > to) end = to;
      this.line(text, at, end);
      at = end + 1;
    }
  }

  private line(text: Buffer, start: number, end: number): void {
    // Address: hex up to the first space, as two 32-bit halves.
    let hi = 0;
    let lo = 0;
    let p = start;
    for (; p < end; p++) {
      const d = hexDigit(text[p] ?? 0);
      if (d < 0) break;
      hi = ((hi << 4) | (lo >>> 28)) >>> 0;
      lo = ((lo << 4) | d) >>> 0;
    }
    const digits = p - start;
    if (digits === 0 || digits > 16 || p + 3 >= end || text[p] !== SPACE || text[p + 2] !== SPACE) return;
    const type = text[p + 1];
    // t T w W: text symbols; d D b B: data (initialized or not), kept in the kernel half only.
    const code = type === 0x74 || type === 0x54 || type === 0x77 || type === 0x57;
    const data = type === 0x64 || type === 0x44 || type === 0x62 || type === 0x42;
    if (!code && !(data && hi >= 0x80000000)) return;
    if (hi === 0 && lo === 0) return;
    const nameStart = p + 3;
    let nameEnd = nameStart;
    while (nameEnd < end && text[nameEnd] !== TAB && text[nameEnd] !== SPACE) nameEnd++;
    const length = nameEnd - nameStart;
    if (length === 0 || length > 0xffff) return;
    let module = 0;
    if (text[nameEnd] === TAB) {
      let from = nameEnd + 1;
      let to = end;
      while (to > from && (text[to - 1] === SPACE || text[to - 1] === 0x0d)) to--;
      if (text[from] === 0x5b) from++;
      if (to > from && text[to - 1] === 0x5d) to--;
      module = this.module(text.toString('latin1', from, to));
      if (module < 0) return;
    }
    if (this.namesUsed + length > this.names.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.names.length * 2, this.namesUsed + length));
      this.names.copy(bigger, 0, 0, this.namesUsed);
      this.names = bigger;
    }
    text.copy(this.names, this.namesUsed, nameStart, nameEnd);
    (code ? this.text : this.data).push(hi, lo, this.namesUsed, length, module);
    this.namesUsed += length;
  }

  /** The module's index, or -1 when the table of them is full. */
  private module(name: string): number {
    let index = this.moduleIndex.get(name);
    if (index === undefined) {
      if (this.modules.length > 0xffff) return -1;
      index = this.modules.length;
      this.modules.push(name);
      this.moduleIndex.set(name, index);
    }
    return index;
  }
}
