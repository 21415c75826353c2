// Kernel symbolization from /proc/kallsyms text: text symbols of the core
// kernel and of modules, sorted once, looked up by binary search.
export interface Symbol {
  name: string;
  /** Offset of the address from the symbol's start. */
  offset: bigint;
  /** Module name, empty for the core kernel. */
  module: string;
}

interface Entry {
  address: bigint;
  name: string;
  module: string;
}

const TEXT_TYPES = new Set(['t', 'T', 'w', 'W']);

export class Kallsyms {
  private readonly entries: Entry[];

  private constructor(entries: Entry[]) {
    this.entries = entries;
  }

  /** Parses kallsyms text ("ffffffff81000000 T _stext", "... t fn\t[module]"). */
  static parse(text: string): Kallsyms {
    const entries: Entry[] = [];
    for (const line of text.split('\n')) {
      const [addr, type, name, module] = line.split(/\s+/);
      if (!addr || !type || !name || !TEXT_TYPES.has(type)) continue;
      const address = BigInt(`0x${addr}`);
      // Addresses read as 0 without CAP_SYSLOG (kptr_restrict): useless for lookup.
      if (address === 0n) continue;
      entries.push({ address, name, module: module ? module.replace(/^\[|\]$/g, '') : '' });
    }
    entries.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    return new Kallsyms(entries);
  }

  get size(): number {
    return this.entries.length;
  }

  /** The symbol containing address, or undefined below the first symbol. */
  lookup(address: bigint): Symbol | undefined {
    let lo = 0;
    let hi = this.entries.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const entry = this.entries[mid];
      if (entry && entry.address <= address) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    const entry = this.entries[found];
    return entry ? { name: entry.name, offset: address - entry.address, module: entry.module } : undefined;
  }

  /** "name+0xoff [module]" or the raw address. */
  format(address: bigint): string {
    const s = this.lookup(address);
    if (!s) return `0x${address.toString(16)}`;
    return `${s.name}+0x${s.offset.toString(16)}${s.module ? ` [${s.module}]` : ''}`;
  }
}
