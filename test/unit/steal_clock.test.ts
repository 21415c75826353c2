// The module's steal clock setting: the steal_time symbol's per-CPU offset from kallsyms.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stealClockSetting } from '@irqtrace/agent';

const dir = mkdtempSync(join(tmpdir(), 'irqtrace-kallsyms-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function settingFor(kallsyms: string | undefined): Promise<Record<string, string>> {
  const proc = mkdtempSync(join(dir, 'proc-'));
  if (kallsyms !== undefined) writeFileSync(join(proc, 'kallsyms'), kallsyms);
  return stealClockSetting(proc);
}

describe('the steal clock setting', () => {
  it("is steal_time's per-CPU offset, in decimal, on a KVM guest", async () => {
    const kallsyms = '0000000000034060 A kvm_apic_eoi\n0000000000034080 A steal_time\nffffffff8107d1a0 t kvm_steal_clock\n';
    expect(await settingFor(kallsyms)).toEqual({ steal_time_offset: String(0x34080) });
  });

  it('is none where the symbol is absent, hidden (kptr_restrict: zeros) or kallsyms unreadable', async () => {
    expect(await settingFor('ffffffff8107d1a0 t kvm_steal_clock\n')).toEqual({});
    expect(await settingFor('0000000000000000 A steal_time\n')).toEqual({});
    expect(await settingFor('0000000000034080 A steal_time_x\n')).toEqual({});
    expect(await settingFor(undefined)).toEqual({});
  });
});
