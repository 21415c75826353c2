// Kernel symbolization from /proc/kallsyms text: text symbols of the core
// kernel and of modules, sorted once, looked up by binary search.
//
// Addresses are kept as float64 offsets from the lowest one, in a typed
// array: kernel and module text span far less than 2^53 bytes, so the
// offsets are exact, and the search compares doubles instead of bigints.
export interface Symbol {
  name: string;
  /** Offset of the address from the symbol's start. */
  offset: bigint;
  /** Module name, empty for the core kernel. */
  module: string;
}

export class Kallsyms {
  private constructor(
    private readonly base: bigint,
    private readonly offsets: Float64Array,
    private readonly names: string[],
    private readonly modules: string[],
  ) {}

  /**
   * Parses kallsyms text ("ffffffff81000000 T _stext", "... t fn\t[module]").
   * Scans the text in place: on a node agent this runs at start and on every
   * module change, over ~150,000 lines, and its garbage is the agent's peak RSS.
   */
  static parse(text: string): Kallsyms {
    const addresses: bigint[] = [];
    const names: string[] = [];
    const modules: string[] = [];
    const interned = new Map<string, string>();
    let at = 0;
    while (at < text.length) {
      let end = text.indexOf('\n', at);
      if (end < 0) end = text.length;
      const line = text.slice(at, end);
      at = end + 1;
      const sp1 = line.indexOf(' ');
      const type = line.charCodeAt(sp1 + 1);
      // t T w W: text symbols.
      if (sp1 <= 0 || !(type === 116 || type === 84 || type === 119 || type === 87) || line.charCodeAt(sp1 + 2) !== 32) continue;
      const address = BigInt(`0x${line.slice(0, sp1)}`);
      // Addresses read as 0 without CAP_SYSLOG (kptr_restrict): useless for lookup.
      if (address === 0n) continue;
      const tab = line.indexOf('\t', sp1 + 3);
      addresses.push(address);
      names.push(line.slice(sp1 + 3, tab < 0 ? undefined : tab).trimEnd());
      let mod = '';
      if (tab >= 0) {
        const raw = line.slice(tab + 1).trim().replace(/^\[|\]$/g, '');
        mod = interned.get(raw) ?? raw;
        interned.set(raw, mod);
      }
      modules.push(mod);
    }
    const order = Array.from(addresses.keys()).sort((x, y) => {
      const a = addresses[x] ?? 0n;
      const b = addresses[y] ?? 0n;
      return a < b ? -1 : a > b ? 1 : 0;
    });
    const base = addresses[order[0] ?? 0] ?? 0n;
    return new Kallsyms(
      base,
      Float64Array.from(order, (i) => Number((addresses[i] ?? 0n) - base)),
      order.map((i) => names[i] ?? ''),
      order.map((i) => modules[i] ?? ''),
    );
  }

  get size(): number {
    return this.names.length;
  }

  /** Index of the symbol containing address, or -1 below the first symbol. */
  private find(address: bigint): number {
    if (address < this.base) return -1;
    const target = Number(address - this.base);
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
    return found;
  }

  /** The symbol containing address, or undefined below the first symbol. */
  lookup(address: bigint): Symbol | undefined {
    const i = this.find(address);
    if (i < 0) return undefined;
    return { name: this.names[i] ?? '', offset: address - this.base - BigInt(this.offsets[i] ?? 0), module: this.modules[i] ?? '' };
  }

  /** "name+0xoff [module]" or the raw address. */
  format(address: bigint): string {
    const s = this.lookup(address);
    if (!s) return `0x${address.toString(16)}`;
    return `${s.name}+0x${s.offset.toString(16)}${s.module ? ` [${s.module}]` : ''}`;
  }
}
