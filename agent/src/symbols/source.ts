// The kernel's symbols as they are now: /proc/kallsyms, read again when the
// set of loaded modules changes (a module loaded after the agent started
// would otherwise show as raw addresses, or worse, as the wrong module's).
import type { ProcFs } from '../attribution/procfs.js';
import { Kallsyms } from './kallsyms.js';

export class SymbolSource {
  private modules = '';
  private current = Kallsyms.parse('');
  /** Times the table was (re)loaded. */
  loads = 0;

  constructor(private readonly proc: ProcFs) {}

  get symbols(): Kallsyms {
    return this.current;
  }

  /** Loads the table if it never was or if /proc/modules changed; true when it did. */
  async refresh(): Promise<boolean> {
    // Module names and load addresses: their change is what moves symbols.
    const modules = ((await this.proc.read('modules')) ?? '')
      .split('\n')
      .map((l) => { const f = l.split(' '); return `${f[0] ?? ''} ${f.at(-1) ?? ''}`; })
      .join('\n');
    if (this.loads > 0 && modules === this.modules) return false;
    try {
      this.current = await Kallsyms.fromChunks(this.proc.chunks('kallsyms'));
    } catch (err) {
      throw new Error(`cannot read /proc/kallsyms: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.modules = modules;
    this.loads++;
    return true;
  }
}
