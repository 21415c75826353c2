// IRQ lines by name: the action names /proc/interrupts shows for each IRQ
// (nvme0q1, eth0-TxRx-3, virtio1-req.0), as people know their devices.
// Numbers differ from node to node and boot to boot; names mostly do not.
// A pattern is a name, or a prefix followed by '*'.

/** One numbered line of /proc/interrupts: the IRQ and its actions' names. */
export interface InterruptLine {
  irq: number;
  actions: string[];
}

/**
 * Parses /proc/interrupts. After the per-CPU counts the kernel prints the
 * chip, the hardware IRQ and trigger, then the actions (", "-separated),
 * each column set off by two or more spaces (show_interrupts()).
 */
export function parseInterrupts(text: string): InterruptLine[] {
  const lines = text.split('\n');
  const cpus = (lines[0] ?? '').trim().split(/\s+/).filter((c) => /^CPU\d+$/.test(c)).length;
  const out: InterruptLine[] = [];
  for (const line of lines.slice(1)) {
    const m = /^\s*(\d+):(.*)$/.exec(line);
    if (!m?.[1] || m[2] === undefined) continue;
    // Skip the counts: one number per CPU.
    let rest = m[2];
    for (let i = 0; i < cpus; i++) rest = rest.replace(/^\s*\d+/, '');
    // Chip, hwirq-handler (e.g. 16-fasteoi; absent on some chips), actions (absent on an unused line).
    const columns = rest.trim().split(/\s{2,}/).slice(1);
    if (columns[0] !== undefined && isHandlerColumn(columns[0])) columns.shift();
    const actions = columns.length ? (columns.at(-1) ?? '').split(', ').filter(Boolean) : [];
    out.push({ irq: Number(m[1]), actions });
  }
  return out;
}

/** "16-fasteoi", "0-edge", "-edge", "Edge": the hardware IRQ and flow handler column. */
function isHandlerColumn(column: string): boolean {
  return /^\d*\s*-[A-Za-z_]+$/.test(column) || /^(Edge|Level)(\s*-[A-Za-z_]+)?$/.test(column);
}

/** A name or a prefix with a trailing '*': letters, digits and _ . : @ / + - */
export function isIrqNamePattern(pattern: string): boolean {
  return /^[A-Za-z0-9_.:@/+-]+\*?$/.test(pattern);
}

function matches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

/** The IRQ numbers whose actions match the patterns (sorted), and the patterns that matched none. */
export function resolveIrqNames(patterns: readonly string[], lines: readonly InterruptLine[]): { irqs: number[]; unmatched: string[] } {
  const irqs = new Set<number>();
  const unmatched: string[] = [];
  for (const pattern of patterns) {
    const hits = lines.filter((l) => l.actions.some((a) => matches(pattern, a)));
    if (!hits.length) unmatched.push(pattern);
    for (const l of hits) irqs.add(l.irq);
  }
  return { irqs: [...irqs].sort((a, b) => a - b), unmatched };
}

/** The IRQ numbers given plus the lines the name patterns match (sorted, once each), and the patterns that matched none. */
export function withNamedIrqs(irqs: readonly number[], patterns: readonly string[], lines: readonly InterruptLine[]): { irqs: number[]; unmatched: string[] } {
  const named = resolveIrqNames(patterns, lines);
  return { irqs: [...new Set([...irqs, ...named.irqs])].sort((a, b) => a - b), unmatched: named.unmatched };
}
