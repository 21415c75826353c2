// Host stalls are not the task's fault. On a KVM guest the vCPU's steal clock says how long the
// host had it descheduled; a sampled section that is mostly steal is marked as the hypervisor's,
// kept out of the histograms. TCG has no steal clock (KVM writes it), so the selftest's steal op
// stands in for the host: it holds a section with interrupts off, then adds its length to the CPU's
// struct kvm_steal_time as KVM does for a vCPU it descheduled that long. An irqoff section of the
// same length without it is the control. The module (sampled, hybrid: also a section its lock
// hooks time) and the eBPF backend (sampled), on Debian's kernel.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Edge, Kind, RecordFlag } from '@irqtrace/agent';
import type { SectionRecord } from '@irqtrace/agent';
import { Vm } from '../../test/vm/vm.js';
import { BpfLoader } from './bpf_loader.js';
import { matching, Rig, timerLateNs } from './harness.js';
import type { Report } from './harness.js';

const PERIOD_NS = 1_000_000;
const THRESHOLD_NS = 1_000_000;

let vm: Vm;
let rig: Rig;
/** The per-CPU offset of the guest's struct kvm_steal_time, in decimal (the selftest reads %llu). */
let offset = '';

beforeAll(async () => {
  vm = await Vm.boot({ flavour: 'debian' });
  rig = await Rig.create(vm);
  const line = /^([0-9a-f]+) \w steal_time$/m.exec(await vm.run("grep ' steal_time$' /proc/kallsyms"));
  if (!line?.[1]) throw new Error('no steal_time in /proc/kallsyms: Debian builds KVM_GUEST');
  offset = BigInt(`0x${line[1]}`).toString();
});

afterAll(async () => {
  await vm.stop();
});

/** Steal sections and control sections, on both CPUs; each with the witness timer where it can. */
async function workload(): Promise<{ stolen: Report[]; plain: Report[] }> {
  // Warm up: TCG translates code on its first run, slowly, inside the section.
  await rig.irqburn(`steal 1500 ${offset} 0`, `steal 1500 ${offset} 1`, 'irqoff 1500 0', 'irqoff 1500 1');
  const stolen = await rig.irqburn(`steal 3000 ${offset} 0`, `steal 4000 ${offset} 1`, `steal 5000 ${offset} 0`);
  const plain = await rig.irqburn('irqoff 3000 0 1', 'irqoff 4000 1 1', 'irqoff 5000 0 1');
  return { stolen, plain };
}

function expectMarked(recs: SectionRecord[], stolen: Report[], plain: Report[], label: string): void {
  for (const report of stolen) {
    const found = matching(recs, report, Kind.IrqsOff);
    expect(found, `${label}: one record for ${JSON.stringify(report.fields)}`).toHaveLength(1);
    expect(found[0]?.flags ?? 0, `${label}: marked the hypervisor's`).toSatisfy((f: number) => (f & RecordFlag.Hypervisor) !== 0);
  }
  let judged = 0;
  for (const report of plain) {
    // A witness that came late says the guest's timer interrupts were late: not judged.
    if (timerLateNs(report) >= 200_000) continue;
    judged++;
    const found = matching(recs, report, Kind.IrqsOff);
    expect(found.length, `${label}: a record for ${JSON.stringify(report.fields)}`).toBeGreaterThan(0);
    for (const rec of found) expect(rec.flags & RecordFlag.Hypervisor, `${label}: no steal, not the hypervisor's`).toBe(0);
  }
  expect(judged, `${label}: every control section's timer came late: the host was too busy to test`).toBeGreaterThan(0);
  console.log(`${label}: ${stolen.length} sections the steal clock took, marked; ${judged} without, not marked`);
}

describe('sections the steal clock says the host took', () => {
  it('refuses a steal clock offset where there is none', async () => {
    await rig.load({ method: 'sampled', period_ns: PERIOD_NS, threshold_ns: THRESHOLD_NS });
    try {
      expect(await rig.get('steal_time_offset')).toBe('0');
      // Misaligned, past the per-CPU area, unmapped, not a number.
      for (const bad of ['12', '0x100000', '0x7fffffffffff0000', 'steal']) {
        const r = await rig.set('steal_time_offset', bad);
        expect(r.code, `steal_time_offset=${bad}`).not.toBe(0);
      }
      expect(await rig.get('steal_time_offset')).toBe('0');
      expect((await rig.set('steal_time_offset', offset)).code).toBe(0);
      expect(await rig.get('steal_time_offset')).toBe(offset);
      const dmesg = await vm.dmesg();
      expect(dmesg).toMatch(/steal_time_offset=0x7fffffffffff0000 refused: no steal clock there/);
    } finally {
      await rig.unload();
    }
  });

  for (const method of ['sampled', 'hybrid']) {
    it(`module, ${method}: marks a section that is mostly steal as the hypervisor's, and not one without`, async () => {
      await rig.load({ method, period_ns: PERIOD_NS, threshold_ns: THRESHOLD_NS, steal_time_offset: offset });
      try {
        await rig.startReader();
        const { stolen, plain } = await workload();
        // Opened and closed by the lock functions: hybrid times it by its hooks, not the sampler.
        const locked = method === 'hybrid' ? await rig.irqburn(`steal 3000 ${offset} 0 1`, `steal 4000 ${offset} 1 1`) : [];
        const recs = await rig.stopReader();
        expectMarked(recs, [...stolen, ...locked], plain, `module ${method}`);
        for (const report of locked) expect(matching(recs, report, Kind.IrqsOff)[0]).toMatchObject({ startBy: Edge.Lock, endBy: Edge.Lock });
      } finally {
        await rig.unload();
      }
    });
  }

  it("eBPF, sampled: finds the steal clock itself and marks the same", async () => {
    const loader = await BpfLoader.create(vm);
    await loader.start({ method: 'sampled', period_ns: PERIOD_NS, threshold_ns: THRESHOLD_NS });
    try {
      const { stolen, plain } = await workload();
      await new Promise((r) => setTimeout(r, 500));
      expectMarked(await loader.records(), stolen, plain, 'eBPF sampled');
    } finally {
      await loader.stop('TERM');
    }
  });
});
