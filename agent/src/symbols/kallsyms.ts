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

const TEXT_TYPES = new Set(['t', 'T', 'w', 'W']);

export class Kallsyms {
  private constructor(
    private readonly base: bigint,
    private readonly offsets: Float64Array,
    private readonly names: string[],
    private readonly modules: string[],
  ) {}

  /** Parses kallsyms text ("ffffffff81000000 T _stext", "... t fn\t[module]"). */
  static parse(text: string): Kallsyms {
    const entries: { address: bigint; name: string; module: string }[] = [];
    const interned = new Map<string, string>();
    for (const line of text.split('\n')) {
      const [addr, type, name, module] = line.split(/\s+/);
      if (!addr || !type || !name || !TEXT_TYPES.has(type)) continue;
      const address = BigInt(`0x${addr}`);
      // Addresses read as 0 without CAP_SYSLOG (kptr_restrict): useless for lookup.
      if (address === 0n) continue;
      const mod = module ? module.replace(/^\[|\]$/g, '') : '';
      if (!interned.has(mod)) interned.set(mod, mod);
      entries.push({ address, name, module: interned.get(mod) ?? mod });
    }
    entries.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const base = entries[0]?.address ?? 0n;
    return new Kallsyms(
      base,
      Float64Array.from(entries, (e) => Number(e.address - base)),
      entries.map((e) => e.name),
      entries.map((e) => e.module),
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
