import { describe, expect, it } from 'vitest';
import { resolveTraceIrqNames } from '@irqtrace/agent';
import type { Trace } from '@irqtrace/agent';
import { parseAgentConfig } from '../../agent/src/config/file.js';
import { parseInterrupts, resolveIrqNames } from '../../agent/src/config/irq_names.js';
import { configFromOptions, parseTarget } from '../../agent/src/cli/record.js';
import type { RecordOptions } from '../../agent/src/cli/record.js';

// The CI machine's own /proc/interrupts (2 vCPUs, virtio), with a shared line
// (two actions), a chip without a hwirq column, one without actions, and the
// per-CPU summary lines (NMI, LOC, ...) that are not IRQ lines.
const INTERRUPTS = `           CPU0       CPU1       
  0:         36          0   IO-APIC   2-edge      timer
  9:          0          0   IO-APIC   9-fasteoi   acpi
 16:        412         17   IO-APIC  16-fasteoi   ehci_hcd:usb1, nouveau
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 25:          0          1  IO-APIC   6-edge      ACPI:Ged
 26:          0         14  IO-APIC   4-edge      ttyS0
 28:          0          0 PCI-MSIX-0000:00:01.0   0-edge      virtio0-config
 36:          0     130996 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 40:       9912          0 PCI-MSIX-0000:00:04.0   0-edge      nvme0q0
 41:        310       2219 PCI-MSIX-0000:00:04.0   1-edge      nvme0q1
 42:         51          0  XT-PIC      cascade
 43:          0          0   IO-APIC  23-fasteoi
NMI:          0          0   Non-maskable interrupts
LOC:     188270     190815   Local timer interrupts
ERR:          0
`;

describe('IRQ lines by name', () => {
  const lines = parseInterrupts(INTERRUPTS);

  it("reads each numbered line's action names, and nothing else", () => {
    expect(lines.map((l) => l.irq)).toEqual([0, 9, 16, 24, 25, 26, 28, 36, 40, 41, 42, 43]);
    expect(lines.find((l) => l.irq === 16)?.actions).toEqual(['ehci_hcd:usb1', 'nouveau']);
    expect(lines.find((l) => l.irq === 36)?.actions).toEqual(['virtio1-req.0']);
    expect(lines.find((l) => l.irq === 42)?.actions).toEqual(['cascade']);
    expect(lines.find((l) => l.irq === 43)?.actions).toEqual([]);
  });

  it('resolves names and prefixes to every line that has them, and says which matched none', () => {
    expect(resolveIrqNames(['nvme0q*', 'ACPI:Ged', 'nouveau', 'eth0', 'nvme1*'], lines)).toEqual({ irqs: [16, 24, 25, 40, 41], unmatched: ['eth0', 'nvme1*'] });
    // A name is the whole action name, not a prefix of one.
    expect(resolveIrqNames(['nvme0q'], lines).irqs).toEqual([]);
  });

  it('adds the resolved lines to the traces that name them', () => {
    const base: Trace = { name: 'a', all: false, irqs: [7], irqNames: ['nvme0q*', 'missing'], thresholdNs: 1n, method: 'auto', backend: 'auto', periodNs: 1n, softirqs: false, stacks: true, endUnixNs: 0n };
    const all: Trace = { ...base, name: 'b', all: true, irqs: [], irqNames: [] };
    const r = resolveTraceIrqNames([base, all], lines);
    expect(r.traces.map((t) => t.irqs)).toEqual([[7, 40, 41], []]);
    expect(r.traces[1]).toBe(all);
    expect(r.unmatched).toEqual(['missing']);
  });

  it('takes names in the config file and on the command line, and refuses what is neither', () => {
    const file = parseAgentConfig('traces:\n  - name: disks\n    target: [24, nvme0q*, "virtio1-req.0"]\n');
    expect(file.traces[0]).toMatchObject({ all: false, irqs: [24], irqNames: ['nvme0q*', 'virtio1-req.0'] });
    expect(() => parseAgentConfig('traces:\n  - name: x\n    target: [24, "eth0 rx"]\n')).toThrow("traces[0].target[1]: 'eth0 rx' is neither");

    expect(parseTarget('irq:24,nvme0q1,eth0-*')).toEqual({ irqs: [24], irqNames: ['nvme0q1', 'eth0-*'], irqsOff: false });
    expect(() => parseTarget('irq:eth*0')).toThrow(/is not all, irqs-off, or irq:/);
    const options: RecordOptions = { target: 'irq:nvme0q*,26', threshold: '100us', method: 'auto', backend: 'auto', period: '1ms', cpus: 'all', stacks: true, softirqs: false, json: false, proc: '/proc', dev: '/dev', cgroupRoot: '/sys/fs/cgroup', podLogs: '/var/log/pods' };
    expect(configFromOptions(options, () => lines).cfg.irqs).toEqual([26, 40, 41]);
    expect(() => configFromOptions({ ...options, target: 'irq:eth0' }, () => lines)).toThrow("target: no IRQ line named 'eth0' in /proc/interrupts");
  });
});
