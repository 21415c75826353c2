import { describe, expect, it } from 'vitest';
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

  it('ignores data symbols and zeroed addresses, and says when nothing matches', () => {
    expect(syms.size).toBe(5);
    expect(syms.lookup(0xffffffff81052010n)?.name).toBe('handle_softirqs');
    expect(syms.lookup(0x1000n)).toBeUndefined();
    expect(syms.format(0x1000n)).toBe('0x1000');
  });
});
