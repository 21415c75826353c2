// The sampled and irq-line methods on Debian's stock kernel (no preemptirq
// tracepoints), against the selftest's ground truth.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kind, Method, RecordFlag } from '@irqtrace/agent';
import type { Kallsyms, SectionRecord } from '@irqtrace/agent';
import { Vm } from '../../test/vm/vm.js';
import { Rig, distribution, matching, median, startsMasking, timerLateNs } from './harness.js';
import type { Report } from './harness.js';

const PERIOD_NS = 1_000_000;
const THRESHOLD_NS = 1_000_000;

let vm: Vm;
let rig: Rig;
let syms: Kallsyms;
let line = 0;
let irqsOff: Report[] = [];
let bhOff: Report[] = [];
let masked: Report[] = [];
let recs: SectionRecord[] = [];
const IRQLINE_ROUNDS = Number(process.env.IRQTRACE_IRQLINE_ROUNDS ?? 1);

beforeAll(async () => {
  vm = await Vm.boot({ flavour: 'debian' });
  rig = await Rig.create(vm);
  // The serial port's line: present on every guest, harmless to mask for a few ms.
  const interrupts = await vm.run('cat /proc/interrupts');
  const serial = /^\s*(\d+):.*\bttyS0\b/m.exec(interrupts);
  if (!serial?.[1]) throw new Error(`no ttyS0 line in /proc/interrupts:\n${interrupts}`);
  line = Number(serial[1]);
  await rig.load({ method: 'sampled', period_ns: PERIOD_NS, threshold_ns: THRESHOLD_NS, softirqs: true, irqs: String(line) });
  // TCG translates code on its first run, slowly, inside whatever section runs it: warm the paths up.
  await rig.irqburn('irqoff 3000 0', 'irqoff 3000 1', 'bhoff 3000 0', 'bhoff 3000 1', `irqline ${line} 1000 2`, `irqline ${line} 1000 1`);
  await rig.startReader();
  // Each with the selftest's witness timer: how late the guest's timer interrupts came.
  irqsOff = await rig.irqburn('irqoff 3000 0 1', 'irqoff 5000 1 1', 'irqoff 8000 0 1', 'irqoff 4000 1 1');
  bhOff = await rig.irqburn('bhoff 3000 1 1', 'bhoff 5000 0 1', 'bhoff 8000 1 1');
  const maskings = [`irqline ${line} 3000 2`, `irqline ${line} 1500 1`, `irqline ${line} 2000 3`];
  masked = await rig.irqburn(...Array.from({ length: IRQLINE_ROUNDS }, () => maskings).flat());
  recs = await rig.stopReader();
  syms = await rig.kallsyms();
});

afterAll(async () => {
  await vm.stop();
});

/** The records of a kind on the report's CPU around its section, for a failure's message. */
function nearby(report: Report, kind: Kind): string {
  const window = 5n * BigInt(PERIOD_NS);
  const end = report.startNs + report.durationNs;
  const near = recs.filter((r) => r.kind === kind && r.cpu === report.cpu && r.startNs < end + window && r.startNs + r.durationNs > report.startNs - window);
  const rel = (ns: bigint) => `${Number(ns - report.startNs) / 1e6} ms`;
  const lines = near.map((r) => `${r.comm}/${r.pid} from ${rel(r.startNs)} to ${rel(r.startNs + r.durationNs)}`);
  return `records of this kind on cpu ${report.cpu}, times from the section's start (it ended at ${rel(end)}): ${lines.join(', ') || 'none'}`;
}

/** A timer interrupt this close to when it was owed comes at the instruction that re-enabled interrupts. */
const ON_TIME_NS = 100_000;

/**
 * Sections the sampler cannot be held to: the selftest's witness timer came late (200 µs and more,
 * where 0 for irqs off and 30-70 µs for softirqs off is usual under TCG). The sampler's interrupts
 * come the same way (one clock event device serves every hrtimer on a CPU), so its samples of the
 * section can come after it ended, in whatever ran then: a 3 ms section on a busy host has had no
 * record with its witness 1.9 ms late, and none with it 0.26 ms late (its sampler's timer later
 * still). On hardware that is µs; under TCG QEMU's main loop delivers them, ms late when the host
 * is busy.
 */
const excusedByLateTimer = (report: Report) => timerLateNs(report) >= 200_000;

function checkSampled(reports: Report[], kind: Kind, label: string): void {
  const errors: number[] = [];
  for (const report of reports) {
    const found = matching(recs, report, kind);
    const late = timerLateNs(report);
    if (found.length === 0 && excusedByLateTimer(report)) {
      console.log(`${label}: no record for ${JSON.stringify(report.fields)}: the guest's timer interrupts came ${late / 1e6} ms late (the host was busy)`);
      continue;
    }
    expect(found, `one ${label} record for ${JSON.stringify(report.fields)}; ${nearby(report, kind)}`).toHaveLength(1);
    const rec = found[0] as SectionRecord;
    expect(rec).toMatchObject({ method: Method.Sampled, comm: 'irqburn', pid: report.pid, cpu: report.cpu });
    expect(rec.errorNs).toBe(BigInt(PERIOD_NS));
    const error = Number(report.durationNs - rec.durationNs);
    errors.push(error);
    // A lower bound, short of the truth by less than one period: the method's guarantee.
    expect(error).toBeLessThanOrEqual(PERIOD_NS);
    // The sample that measured it ran when the section ended (the timer's interrupt, or its
    // softirq, was held back until then): between the selftest's inner and outer clocks, later
    // only by how late the guest's timer interrupts came (the witness says), plus their entry.
    const sampledAt = rec.startNs + rec.durationNs;
    const end = report.startNs + report.durationNs;
    const outerEnd = end + BigInt(Number(report.fields.outer_ns) - Number(report.durationNs));
    const slack = BigInt(Math.round(Number.isFinite(late) ? late : 0)) + 100_000n;
    expect(sampledAt, `sample of ${JSON.stringify(report.fields)} at ${sampledAt}`).toBeGreaterThanOrEqual(end);
    expect(sampledAt, `sample of ${JSON.stringify(report.fields)} at ${sampledAt}`).toBeLessThanOrEqual(outerEnd + slack);
    // It started at the sample's expiry: within a period before the section, or earlier when the
    // guest's timer interrupts came late before it (on a busy host under TCG: 4-5 ms seen), and
    // the record then claims that wait too. Only a gross error is caught here.
    expect(Number(report.startNs - rec.startNs)).toBeLessThanOrEqual(10 * PERIOD_NS);
  }
  console.log(`${label}: truth - sampled duration (ns), period ${PERIOD_NS}: ${distribution(errors)}; witness timer late (ns): ${reports.map(timerLateNs).join(' ')}`);
  // Something to judge: a host too busy for any section to get its timer interrupts says so.
  expect(errors.length, `${label}: every section's timer interrupts came late: the host was too busy to test sampling`).toBeGreaterThan(0);
}

describe('the sampled method, on a stock kernel', () => {
  it('runs sampled: this kernel has no preemptirq tracepoints', async () => {
    expect(await vm.run('cat /sys/class/misc/irqtrace_stats/stats')).toMatch(/^irqs_off sampled\nsoftirqs_off sampled\nirq_lines exact\n/);
  });

  it('records every irqs-off section of 3 ms and more, its timer interrupts on time, within one period of the truth', () => {
    checkSampled(irqsOff, Kind.IrqsOff, 'irqs-off');
  });

  it('names the code that re-enabled interrupts', () => {
    // The timer interrupts the instruction that re-enabled interrupts if its interrupt is pending
    // then; under TCG it can come later (the witness timer says how much), at a later irqs-on
    // point or in user mode, and the record then names that or no site.
    const seen: string[] = [];
    for (const report of irqsOff) {
      const rec = matching(recs, report, Kind.IrqsOff)[0];
      if (!rec) continue; // excused above, or failed there
      const site = rec.flags & RecordFlag.SitesValid ? (syms.lookup(rec.enableIp)?.name ?? '?') : 'none';
      seen.push(`${site} (timer ${timerLateNs(report)} ns late)`);
      if (timerLateNs(report) > ON_TIME_NS) continue;
      expect(site, `enable site of ${JSON.stringify(report.fields)}`).toMatch(/^irqburn_irqs_off/);
      expect(rec.frames.map((f) => syms.lookup(f)?.name).join(' ')).toMatch(/irqburn_irqs_off\S* .*selftest_write/);
    }
    console.log(`sampled: enable sites named: ${seen.join(', ')}`);
    expect(seen.length).toBeGreaterThan(0);
  });

  it('records every softirqs-off section of 3 ms and more, its timer interrupts on time, within one period of the truth', () => {
    checkSampled(bhOff, Kind.SoftirqsOff, 'softirqs-off');
    for (const report of bhOff) {
      const rec = matching(recs, report, Kind.SoftirqsOff)[0];
      if (!rec) continue; // excused above
      expect(rec.frames.map((f) => syms.lookup(f)?.name).join(' ')).toMatch(/irqburn_bh_off/);
    }
  });
});

describe('the irq-line method', () => {
  it('records one section per masking, nested or not, enabled from another CPU', () => {
    const errors: number[] = [];
    for (const report of masked) {
      const found = recs.filter((r) => r.kind === Kind.IrqLine && r.irq === line && r.pid === report.pid);
      const mine = found.filter((r) => startsMasking(report, r.startNs));
      expect(mine, `one irq-line record for ${JSON.stringify(report.fields)}`).toHaveLength(1);
      const rec = mine[0] as SectionRecord;
      expect(rec).toMatchObject({
        method: Method.Exact,
        irq: line,
        comm: 'irqburn',
        cpu: report.cpu,
        enableCpu: Number(report.fields.enable_cpu),
        enablePid: Number(report.fields.enable_pid),
        enableComm: report.fields.enable_comm,
      });
      expect(rec.enableCpu).not.toBe(rec.cpu);
      expect(rec.flags & RecordFlag.EnablerValid).toBeTruthy();
      expect(syms.lookup(rec.disableIp)?.name).toMatch(/^irqburn_mask_line/);
      expect(syms.lookup(rec.enableIp)?.name).toMatch(/^irqburn_enable_line/);
      expect(rec.frames.map((f) => syms.lookup(f)?.name ?? '?')[0]).toMatch(/^irqburn_mask_line/);
      // The hooks fire between the selftest's inner and outer clocks.
      expect(rec.durationNs).toBeGreaterThanOrEqual(BigInt(report.fields.inner_ns ?? '0') - 1_000n);
      expect(rec.durationNs).toBeLessThanOrEqual(BigInt(report.fields.outer_ns ?? '0') + 1_000n);
      errors.push(Number(rec.durationNs - report.durationNs));
    }
    console.log(`irq-line: irqtrace - selftest duration error (ns): ${distribution(errors)}`);
    // Both ends are timed at the entries of disable_irq and enable_irq, as
    // the selftest's clocks are, with both paths warm (a cold first run under
    // TCG costs ~5 µs more): no offset. The median, within 5 µs: the host can
    // stall the guest between a clock and a probe (75 µs seen) in any one.
    expect(Math.abs(median(errors))).toBeLessThanOrEqual(5_000);
  });

  it('keeps a per-IRQ histogram of every masking', async () => {
    const { hists } = await rig.stats();
    const lineHist = hists.find((h) => h.kind === Kind.IrqLine && h.irq === line);
    expect(lineHist?.count).toBeGreaterThanOrEqual(BigInt(masked.length));
    expect(lineHist?.maxNs).toBeGreaterThanOrEqual(2_900_000n);
  });
});
