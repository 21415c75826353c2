// The eBPF backend on Debian's stock kernel (no preemptirq tracepoints):
// sampled irqs-off and irq-line against the selftest's ground truth.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backend, Kind, Method, RecordFlag, Running } from '@irqtrace/agent';
import type { Kallsyms, SectionRecord } from '@irqtrace/agent';
import { Vm } from '../../test/vm/vm.js';
import { BpfLoader } from './bpf_loader.js';
import { interruptWorkload, Rig, distribution, expectInterruptContexts, median, must, startsMasking } from './harness.js';
import { checkEnableSites, checkSampled, checkSampledHistograms } from './sampling.js';
import type { Report } from './harness.js';

const PERIOD_NS = 1_000_000;
// A section is sure to be recorded once it is threshold + period long: the
// sample that ends it can be late over the grid by as little as its length
// less a period.
const THRESHOLD_NS = 1_500_000;

let vm: Vm;
let rig: Rig;
let loader: BpfLoader;
let syms: Kallsyms;
let line: number;
let irqsOff: Report[] = [];
let masked: Report[] = [];
let interruptReports: Report[] = [];
let recs: SectionRecord[] = [];
let startLog = '';

beforeAll(async () => {
  vm = await Vm.boot({ flavour: 'debian' });
  rig = await Rig.create(vm);
  loader = await BpfLoader.create(vm);
  const interrupts = await vm.run('cat /proc/interrupts');
  const serial = /^\s*(\d+):.*\bttyS0\b/m.exec(interrupts);
  if (!serial?.[1]) throw new Error(`no ttyS0 line in /proc/interrupts:\n${interrupts}`);
  line = Number(serial[1]);
  await loader.start({ method: 'sampled', period_ns: PERIOD_NS, threshold_ns: THRESHOLD_NS, irqs: String(line) });
  startLog = await loader.stderr();
  await rig.irqburn('irqoff 3000 0', 'irqoff 3000 1', `irqline ${line} 1000 2`, `irqline ${line} 1000 1`);
  // Each with the selftest's witness timer: how late the guest's timer interrupts came.
  irqsOff = await rig.irqburn('irqoff 3000 0 1', 'irqoff 5000 1 1', 'irqoff 8000 0 1', 'irqoff 4000 1 1');
  masked = await rig.irqburn(`irqline ${line} 3000 2`, `irqline ${line} 1500 1`, `irqline ${line} 2000 3`);
  interruptReports = await rig.irqburn(...interruptWorkload(5000));
  await new Promise((r) => setTimeout(r, 500));
  recs = await loader.records();
  syms = await rig.kallsyms();
});

afterAll(async () => {
  await vm.stop();
});

describe('the eBPF backend on a stock kernel', () => {
  it('runs sampled when asked to', () => {
    expect(startLog).toMatch(/tracing: method=sampled irqs=\d+ threshold_ns=1500000 period_ns=1000000/);
  });

  it('says in its counters what runs', async () => {
    const { counters } = await loader.stats();
    expect(counters.map((c) => [c.irqsOffMethod, c.running])).toEqual(counters.map(() => [Method.Sampled, Running.IrqLines]));
  });

  it('gives a section in a timer callback or a softirq on an idle CPU to that code, not the idle loop', () => {
    expectInterruptContexts(recs, interruptReports, syms, { slackNs: 3_000_000n, shortByNs: BigInt(PERIOD_NS) });
  });


  it('says why exact cannot run here, in one line', async () => {
    const r = await loader.runOnce({ method: 'exact' });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(
      'irqtrace-bpf: method exact: this kernel has no preemptirq tracepoints (it needs CONFIG_TRACE_IRQFLAGS, e.g. CONFIG_IRQSOFF_TRACER); use method=sampled',
    );
  });

  it('records every irqs-off section of 3 ms and more, its timer interrupts on time, within one period of the truth', () => {
    checkSampled({ recs, reports: irqsOff, kind: Kind.IrqsOff, label: 'ebpf sampled', periodNs: PERIOD_NS, like: { backend: Backend.Ebpf, method: Method.Sampled } });
  });

  it('names the code that re-enabled interrupts', () => {
    checkEnableSites(recs, irqsOff, syms, 'ebpf sampled');
  });

  it('records one irq-line section per masking, nested or not, enabled from another CPU', () => {
    const errors: number[] = [];
    for (const report of masked) {
      const mine = recs.filter((r) => r.kind === Kind.IrqLine && r.irq === line && startsMasking(report, r.startNs));
      expect(mine, `one irq-line record for ${JSON.stringify(report.fields)}`).toHaveLength(1);
      const rec = must(mine[0]);
      expect(rec).toMatchObject({
        backend: Backend.Ebpf,
        irq: line,
        comm: 'irqburn',
        pid: report.pid,
        cpu: report.cpu,
        enableCpu: Number(report.fields.enable_cpu),
        enablePid: Number(report.fields.enable_pid),
        enableComm: report.fields.enable_comm,
      });
      expect(rec.flags & RecordFlag.EnablerValid).toBeTruthy();
      expect(syms.lookup(rec.disableIp)?.name).toMatch(/^irqburn_mask_line/);
      expect(syms.lookup(rec.enableIp)?.name).toMatch(/^irqburn_enable_line/);
      expect(syms.lookup(must(rec.frames[0]))?.name).toMatch(/^irqburn_mask_line/);
      // The kprobes fire between the selftest's inner and outer clocks, as the module's do (the host
      // can stall the guest between a clock and a probe: 75 µs seen, so each only within those).
      expect(rec.durationNs).toBeGreaterThanOrEqual(BigInt(report.fields.inner_ns ?? '0') - 1_000n);
      expect(rec.durationNs).toBeLessThanOrEqual(BigInt(report.fields.outer_ns ?? '0') + 1_000n);
      errors.push(Number(rec.durationNs - report.durationNs));
    }
    console.log(`ebpf irq-line: irqtrace-bpf - selftest (ns): ${distribution(errors)}`);
    // Timed at the entries of disable_irq and enable_irq, as the selftest's clocks are: no offset.
    expect(Math.abs(median(errors))).toBeLessThanOrEqual(5_000);
  });

  it('keeps a per-IRQ histogram', async () => {
    const { hists } = await loader.stats();
    const lineHist = hists.find((h) => h.kind === Kind.IrqLine && h.irq === line);
    expect(lineHist?.count).toBeGreaterThanOrEqual(BigInt(masked.length));
  });

  it('counts sections in its histograms, not timer samples, and clears them', async () => {
    await checkSampledHistograms({
      stats: () => loader.stats(),
      clear: async () => { expect(await loader.command('clear')).toMatch(/ok clear/); },
      setFloor: async (ns) => { expect(await loader.command(`sample_floor_ns=${ns}`)).toMatch(/^irqtrace-bpf: ok /); },
      irqburn: (...c) => rig.irqburn(...c),
      busy: async (cpu, ms) => { await vm.execHost(`timeout ${ms / 1000} taskset -c ${cpu} sh -c 'while :; do :; done'; true`); },
    }, PERIOD_NS);
  });

  it('detaches on SIGTERM', async () => {
    const exit = await loader.stop('TERM');
    expect(exit.code).toBe(0);
    const left = (await vm.execHost('bpftool prog show')).stdout;
    expect(left).not.toMatch(/disable_line|enable_line|\bsample\b/);
    expect((await vm.execHost('bpftool perf list')).stdout.trim()).toBe('');
  });
});
