// The eBPF backend's hybrid method on Debian's stock kernel (no preemptirq tracepoints): each
// interrupt's section timed from its handler's entry tracepoint to where interrupts came back on
// (the softirqs irq_exit runs, the sampler's timer it held back, else its handler's exit), exact at
// both ends; everything else sampled, a lock's section too (no lock function is hooked from BPF,
// and the loader says why), each record saying which of its ends is exact. Judged against the
// selftest's own clocks, as the module's hybrid method is (hybrid.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backend, Edge, Kind, Method, RecordFlag } from '@irqtrace/agent';
import type { Kallsyms, SectionRecord } from '@irqtrace/agent';
import { Vm } from '../../test/vm/vm.js';
import { BpfLoader } from './bpf_loader.js';
import { interruptWorkload, matching, Rig } from './harness.js';
import type { Report } from './harness.js';
import { checkInterruptSections } from './interrupt_sections.js';
import { checkSampled } from './sampling.js';

const PERIOD_NS = 1_000_000;
const THRESHOLD_NS = 1_000_000;
// Over TCG's own interrupt latency, as hybrid.test.ts's: it bounds how far past a handler's exit
// its section may end.
const FLOOR_NS = 150_000;
const BOTH_EXACT = RecordFlag.StartExact | RecordFlag.EndExact;

let vm: Vm;
let rig: Rig;
let loader: BpfLoader;
let syms: Kallsyms;
let startLog = '';
let inline: Report[] = [];
let locked: Report[] = [];
let interruptReports: Report[] = [];
let heldTimer: Report[] = [];
let recs: SectionRecord[] = [];

beforeAll(async () => {
  vm = await Vm.boot({ flavour: 'debian' });
  rig = await Rig.create(vm);
  loader = await BpfLoader.create(vm);
  await loader.start({ method: 'hybrid', period_ns: PERIOD_NS, threshold_ns: THRESHOLD_NS, sample_floor_ns: FLOOR_NS });
  startLog = await loader.stderr();
  // TCG translates code on its first run, slowly, inside whatever section runs it: warm the paths up.
  await rig.irqburn('irqoff 3000 0', 'irqoff 3000 1', 'lock 3000 0', 'lock 3000 1');
  await rig.irqburn(...interruptWorkload(1000).slice(0, 4));
  const before = (await loader.records()).length;
  inline = await rig.irqburn('irqoff 3000 0 1', 'irqoff 5000 1 1', 'irqoff 8000 0 1', 'irqoff 4000 1 1');
  locked = await rig.irqburn('lock 3000 0 1', 'lock 5000 1 1', 'lockirq 4000 0 1', 'lockirq 3000 1 1');
  interruptReports = await rig.irqburn(...interruptWorkload(5000));
  // More IPIs and irq_works that hold the sampler's timer back: how their sections end.
  heldTimer = await rig.irqburn(...Array.from({ length: 6 }, () => ['ipi 3000 1', 'irqwork 3000 1']).flat());
  await new Promise((r) => setTimeout(r, 500));
  recs = (await loader.records()).slice(before);
  syms = await rig.kallsyms();
});

afterAll(async () => {
  await vm.stop();
});

describe('the eBPF backend, method hybrid, on a stock kernel', () => {
  it('runs hybrid, saying that it hooks no lock or scheduler function, and why', async () => {
    expect(startLog).toMatch(/tracing: method=hybrid irqs=none threshold_ns=1000000 period_ns=1000000 sample_floor_ns=150000/);
    expect(startLog).toContain('hybrid: interrupts are timed from their handler\'s entry; lock functions and the scheduler are not hooked (a BPF program on a lock function');
    // Debian 6.1's kernel keeps the preempt count and pending softirqs where the programs read them.
    expect(startLog).not.toMatch(/hybrid: no per-CPU/);
    const { counters } = await loader.stats();
    expect(counters.map((c) => c.irqsOffMethod)).toEqual(counters.map(() => Method.Hybrid));
  });

  // auto stays sampled on eBPF for now: in the e2e, hybrid wrote several times sampled's records
  // on a busy guest, in bursts the agent's attribution queue dropped from (not yet understood).
  it('switches to sampled when asked, and auto still picks sampled where exact cannot run', async () => {
    for (const [method, running] of [['sampled', Method.Sampled], ['hybrid', Method.Hybrid], ['auto', Method.Sampled]] as const) {
      expect(await loader.command(`method=${method}`)).toMatch(/irqtrace-bpf: ok/);
      const { counters } = await loader.stats();
      expect(counters.map((c) => c.irqsOffMethod), `method=${method}`).toEqual(counters.map(() => running));
    }
  });

  it('times an interrupt from its handler entry to where interrupts came back on, once, both ends exact', () => {
    checkInterruptSections({ recs, interruptReports, heldTimer, syms, periodNs: PERIOD_NS, label: 'ebpf hybrid, handlers' });
    for (const rec of recs.filter((r) => r.startBy === Edge.Handler)) expect(rec.backend).toBe(Backend.Ebpf);
  });

  it('bounds a section opened inline, or by a lock, by one period, and says its end is exact', () => {
    for (const [label, reports] of [['inline', inline], ['lock', locked]] as const) {
      checkSampled({ recs, reports, kind: Kind.IrqsOff, label: `ebpf hybrid, ${label}`, periodNs: PERIOD_NS, like: { backend: Backend.Ebpf, method: Method.Hybrid, startBy: Edge.Sample } });
      for (const report of reports) {
        for (const rec of matching(recs, report, Kind.IrqsOff)) expect(rec.flags & BOTH_EXACT, 'start bounded, end exact').toBe(RecordFlag.EndExact);
      }
    }
  });
});
