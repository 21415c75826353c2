import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Kallsyms } from '@irqtrace/agent';

const sample = [
  'ffffffff81000000 T _stext',
  'ffffffff81051f3d t handle_softirqs',
  'ffffffff81052000 D some_data',
  'ffffffff81464600 T __schedule',
  'ffffffffa020a191 t irqburn_irqs_off.constprop.0\t[irqtrace_selftest]',
  'ffffffffa020a248 t irqburn_mask_line\t[irqtrace_selftest]',
  '0000000000000000 T hidden_without_cap_syslog',
  '',
].join('\n');

describe('kernel symbolization from /proc/kallsyms', () => {
  const syms = Kallsyms.parse(sample);

  it('finds the text symbol containing an address, with its offset and module', () => {
    expect(syms.lookup(0xffffffffa020a1c2n)).toEqual({ name: 'irqburn_irqs_off.constprop.0', offset: 0x31n, module: 'irqtrace_selftest' });
    expect(syms.lookup(0xffffffff81464694n)).toEqual({ name: '__schedule', offset: 0x94n, module: '' });
    expect(syms.format(0xffffffff81051fd4n)).toBe('handle_softirqs+0x97');
    expect(syms.format(0xffffffffa020a248n)).toBe('irqburn_mask_line+0x0 [irqtrace_selftest]');
  });

  it('names the first listed of symbols at one address (aliases), as the kernel does', () => {
    const aliased = Kallsyms.parse(['ffffffff81000010 t alias_first', 'ffffffff81000010 T alias_second\t[m]', 'ffffffff81000000 T before', 'ffffffff81000010 t alias_third'].join('\n'));
    expect(aliased.lookup(0xffffffff81000012n)).toEqual({ name: 'alias_first', offset: 2n, module: '' });
    expect(aliased.lookup(0xffffffff8100000fn)?.name).toBe('before');
  });

  it('resolves code to text symbols only, zeroed addresses skipped, and says when nothing matches', () => {
    expect(syms.size).toBe(5);
    expect(syms.lookup(0xffffffff81052010n)?.name).toBe('handle_softirqs');
    expect(syms.lookup(0x1000n)).toBeUndefined();
    expect(syms.format(0x1000n)).toBe('0x1000');
  });

  it('resolves a lock to the data symbol it is in, and code or allocated memory to none', () => {
    const table = Kallsyms.parse(
      [
        '0000000000000000 D fixed_percpu_data',
        '000000000002b000 d runqueues',
        'ffffffff81000000 T _stext',
        'ffffffff81464600 T __schedule',
        'ffffffff82a05040 D tasklist_lock',
        'ffffffff82a05080 d pool_lock',
        'ffffffff83000000 T init_text_after_data',
        'ffffffff83400000 B __bss_start',
        'ffffffff83400100 b die_lock',
        'ffffffffc0001000 t nvme_irq\t[nvme]',
        'ffffffffc0004000 d nvme_lock\t[nvme]',
        '0000000000000000 D hidden_without_cap_syslog',
      ].join('\n'),
    );
    expect(table.dataSize).toBe(5);
    expect(table.size).toBe(4);
    expect(table.lookupData(0xffffffff82a05040n)).toEqual({ name: 'tasklist_lock', offset: 0n, module: '' });
    expect(table.lookupData(0xffffffff82a05088n)).toEqual({ name: 'pool_lock', offset: 8n, module: '' });
    expect(table.lookupData(0xffffffff83400180n)).toEqual({ name: 'die_lock', offset: 0x80n, module: '' });
    expect(table.lookupData(0xffffffffc0004010n)).toEqual({ name: 'nvme_lock', offset: 0x10n, module: 'nvme' });
    // Allocated memory (direct map, vmalloc) is below every symbol; x86's per-CPU offsets are not addresses.
    expect(table.lookupData(0xffff888003a1c2c0n)).toBeUndefined();
    expect(table.lookupData(0x2b010n)).toBeUndefined();
    // Past a data symbol into code (init text after .data, a module's text): not in it.
    expect(table.lookupData(0xffffffff83000010n)).toBeUndefined();
    expect(table.lookupData(0xffffffffc0001010n)).toBeUndefined();
    // Code addresses resolve as they did: data symbols are not in their table.
    expect(table.lookup(0xffffffff82a05040n)).toEqual({ name: '__schedule', offset: 0x82a05040n - 0x81464600n, module: '' });
    expect(table.lookup(0xffffffffc0004010n)?.name).toBe('nvme_irq');
  });
});

describe('kallsyms parsing against a plain reference', () => {
  // The reference: every line split on whitespace, sorted with bigints.
  function reference(text: string, types = /^[tTwW]$/): { address: bigint; name: string; module: string }[] {
    const rows: { address: bigint; name: string; module: string; line: number }[] = [];
    text.split('\n').forEach((line, i) => {
      const m = /^([0-9a-f]{1,16}) (\S) ([^\s]+)(?:\t\[([^\]]+)\])?$/.exec(line);
      if (!m?.[1] || !m[2] || !types.test(m[2]) || !m[3] || BigInt(`0x${m[1]}`) === 0n) return;
      rows.push({ address: BigInt(`0x${m[1]}`), name: m[3], module: m[4] ?? '', line: i });
    });
    return rows.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.line - b.line));
  }

  const symbolLine = fc.record({
    address: fc.bigInt({ min: 0xffffffff80000000n, max: 0xffffffffffff0000n }),
    type: fc.constantFrom('t', 'T', 'w', 'W', 'd', 'D', 'b', 'B', 'r'),
    name: fc.stringMatching(/^[a-z_][a-z0-9_.]{0,30}$/),
    module: fc.option(fc.stringMatching(/^[a-z][a-z0-9_]{0,15}$/), { nil: undefined }),
  }).map((s) => `${s.address.toString(16).padStart(16, '0')} ${s.type} ${s.name}${s.module ? `\t[${s.module}]` : ''}`);

  it('finds the same symbol as the reference for any table and address', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(symbolLine, fc.constant('0000000000000000 T hidden'), fc.string().map((junk) => junk.replace(/\s/g, ''))), { maxLength: 60 }), fc.array(fc.bigInt({ min: 0xffffffff7fffff00n, max: 0xffffffffffffffffn }), { maxLength: 20 }), (lines, probes) => {
        const text = lines.join('\n');
        const syms = Kallsyms.parse(text);
        const ref = reference(text);
        expect(syms.size).toBe(ref.length);
        // Not pushed onto probes: fast-check replays its values while shrinking.
        for (const address of [...probes, ...ref.flatMap((row) => [row.address, row.address + 7n])]) {
          let want: (typeof ref)[number] | undefined;
          // The last symbol at or below the address; of several at one address, the first listed.
          for (const row of ref) if (row.address <= address && (!want || row.address > want.address)) want = row;
          const got = syms.lookup(address);
          if (!want) expect(got).toBeUndefined();
          else expect(got).toEqual({ name: want.name, offset: address - want.address, module: want.module });
        }
      }),
      { numRuns: Number(process.env.KALLSYMS_RUNS ?? 300) },
    );
  });

  it('finds the same data symbol as the reference: the last at or below, unless code comes between', () => {
    fc.assert(
      fc.property(fc.array(symbolLine, { maxLength: 60 }), fc.array(fc.bigInt({ min: 0xffffffff7fffff00n, max: 0xffffffffffffffffn }), { maxLength: 20 }), (lines, probes) => {
        const text = lines.join('\n');
        const syms = Kallsyms.parse(text);
        const data = reference(text, /^[dDbB]$/);
        const code = reference(text);
        expect(syms.dataSize).toBe(data.length);
        for (const address of [...probes, ...data.flatMap((row) => [row.address, row.address + 7n])]) {
          let want: (typeof data)[number] | undefined;
          for (const row of data) if (row.address <= address && (!want || row.address > want.address)) want = row;
          const w = want;
          const got = syms.lookupData(address);
          if (!w || code.some((row) => row.address > w.address && row.address <= address)) expect(got).toBeUndefined();
          else expect(got).toEqual({ name: w.name, offset: address - w.address, module: w.module });
        }
      }),
      { numRuns: Number(process.env.KALLSYMS_RUNS ?? 300) },
    );
  });

  it('reads the same from bytes as from text', () => {
    const bytes = Buffer.from(sample, 'latin1');
    const fromBytes = Kallsyms.parse(bytes);
    expect(fromBytes.size).toBe(5);
    expect(fromBytes.format(0xffffffffa020a1c2n)).toBe('irqburn_irqs_off.constprop.0+0x31 [irqtrace_selftest]');
  });
});
