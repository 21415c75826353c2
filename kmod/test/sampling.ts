// What a sampling method can be held to against the selftest's sections run with a witness
// timer (which says how late the guest's timer interrupts came): shared by the kernel module's and
// the eBPF backend's sampled tests.
import { expect } from 'vitest';
import { Kind, RecordFlag } from '@irqtrace/agent';
import { LIMITS } from '@irqtrace/proto';
import type { CountersItem, HistItem, Kallsyms, SectionRecord } from '@irqtrace/agent';
import { distribution, excusedByLateTimer, matching, timerLateNs } from './harness.js';
import type { Report } from './harness.js';

/** The records of a kind on the report's CPU around its section, for a failure's message. */
function nearby(recs: SectionRecord[], report: Report, kind: Kind, periodNs: number): string {
  const window = 5n * BigInt(periodNs);
  const end = report.startNs + report.durationNs;
  const near = recs.filter((r) => r.kind === kind && r.cpu === report.cpu && r.startNs < end + window && r.startNs + r.durationNs > report.startNs - window);
  const rel = (ns: bigint) => `${Number(ns - report.startNs) / 1e6} ms`;
  const lines = near.map((r) => `${r.comm}/${r.pid} from ${rel(r.startNs)} to ${rel(r.startNs + r.durationNs)}`);
  return `records of this kind on cpu ${report.cpu}, times from the section's start (it ended at ${rel(end)}): ${lines.join(', ') || 'none'}`;
}

export interface SampledCase {
  recs: SectionRecord[];
  reports: Report[];
  kind: Kind;
  label: string;
  periodNs: number;
  /** What else each record must match (backend, method). */
  like: Partial<SectionRecord>;
}

/** Each witnessed section's one record, judged as the sampled method promises. */
export function checkSampled({ recs, reports, kind, label, periodNs, like }: SampledCase): void {
  const errors: number[] = [];
  for (const report of reports) {
    const found = matching(recs, report, kind);
    const late = timerLateNs(report);
    expect(late, `${label}: ${JSON.stringify(report.fields)} was run without a witness`).not.toBeNaN();
    if (found.length === 0 && excusedByLateTimer(report)) {
      console.log(`${label}: no record for ${JSON.stringify(report.fields)}: the guest's timer interrupts came ${late / 1e6} ms late (the host was busy)`);
      continue;
    }
    expect(found, `one ${label} record for ${JSON.stringify(report.fields)}; ${nearby(recs, report, kind, periodNs)}`).toHaveLength(1);
    const rec = found[0] as SectionRecord;
    expect(rec).toMatchObject({ ...like, comm: 'irqburn', pid: report.pid, cpu: report.cpu, errorNs: BigInt(periodNs) });
    const error = Number(report.durationNs - rec.durationNs);
    errors.push(error);
    // A lower bound, short of the truth by less than one period: the method's guarantee.
    expect(error).toBeLessThan(periodNs);
    // The sample that measured it ran when the section ended (the timer's interrupt, or its
    // softirq, was held back until then): between the selftest's inner and outer clocks, later
    // only by how late the guest's timer interrupts came (the witness says), plus their entry.
    const sampledAt = rec.startNs + rec.durationNs;
    const end = report.startNs + report.durationNs;
    const outerEnd = end + BigInt(Number(report.fields.outer_ns) - Number(report.durationNs));
    expect(sampledAt, `sample of ${JSON.stringify(report.fields)} at ${sampledAt}`).toBeGreaterThanOrEqual(end);
    if (Number.isFinite(late)) {
      expect(sampledAt, `sample of ${JSON.stringify(report.fields)} at ${sampledAt}`).toBeLessThanOrEqual(outerEnd + BigInt(late) + 100_000n);
    }
    // It starts at the sample's expiry: within a period before the section, or earlier when the
    // guest's timer interrupts came late before it (on a busy host under TCG: 4-5 ms seen), and
    // the record then claims that wait too. Only a gross error is caught here.
    expect(Number(report.startNs - rec.startNs)).toBeLessThanOrEqual(10 * periodNs);
  }
  console.log(`${label}: truth - sampled duration (ns), period ${periodNs}: ${distribution(errors)}; witness timer late (ns): ${reports.map(timerLateNs).join(' ')}`);
  // Something to judge: a host too busy for any section to get its timer interrupts says so.
  expect(errors.length, `${label}: every section's timer interrupts came late: the host was too busy to test sampling`).toBeGreaterThan(0);
}

/**
 * The timer interrupts the instruction that re-enabled interrupts if its interrupt is pending
 * then: the witness's came before the section's closing clock read (0 late). Under TCG it can
 * come later (the witness says how much), at a later irqs-on point or in user mode, and the
 * record then names that or no site. Those that came on time must name the selftest's function,
 * in the site and the stack; and some must have come on time.
 */
export function checkEnableSites(recs: SectionRecord[], irqsOff: Report[], syms: Kallsyms, label: string): void {
  const seen: string[] = [];
  let checked = 0;
  for (const report of irqsOff) {
    const rec = matching(recs, report, Kind.IrqsOff)[0];
    if (!rec) continue; // excused by checkSampled, or failed there
    const site = rec.flags & RecordFlag.SitesValid ? (syms.lookup(rec.enableIp)?.name ?? '?') : 'none';
    seen.push(`${site} (timer ${timerLateNs(report)} ns late)`);
    if (timerLateNs(report) !== 0) continue;
    checked++;
    expect(site, `enable site of ${JSON.stringify(report.fields)}`).toMatch(/^irqburn_irqs_off/);
    expect(rec.frames.map((f) => syms.lookup(f)?.name).join(' ')).toMatch(/irqburn_irqs_off\S* .*selftest_write/);
  }
  console.log(`${label}: enable sites named: ${seen.join(', ')}`);
  expect(checked, `${label}: no section's timer interrupt came on time: the host was too busy to test enable sites`).toBeGreaterThan(0);
}

/** A sampled backend's statistics, and how to zero them and set its floor. */
export interface SampledStats {
  stats(): Promise<{ counters: CountersItem[]; hists: HistItem[] }>;
  clear(): Promise<void>;
  setFloor(ns: number): Promise<void>;
  /** Runs selftest commands (from a task named irqburn). */
  irqburn(...commands: string[]): Promise<Report[]>;
  /** Keeps CPU cpu busy in user space for ms (timer samples in a task, none of them a section). */
  busy(cpu: number, ms: number): Promise<void>;
}

/**
 * A sampled histogram counts sections, not timer samples: one entry per section, of its measured
 * length; the samples are counted apart. Samples later than the floor are sections: under TCG an
 * on-time timer interrupt comes 30-260 µs after its expiry, so the floor here is 300 µs.
 */
export async function checkSampledHistograms(b: SampledStats, periodNs: number): Promise<void> {
  const cpu = 1;
  await b.setFloor(300_000);
  await b.clear();
  await b.busy(cpu, 2000);
  const sections = await b.irqburn('irqoff 3000 1 1', 'irqoff 3000 1 1', 'irqoff 3000 1 1', 'irqoff 3000 1 1', 'irqoff 3000 1 1');
  const { counters, hists } = await b.stats();
  const samples = counters.find((c) => c.cpu === cpu)?.samples ?? 0n;
  const hist = hists.find((h) => h.kind === Kind.IrqsOff && h.cpu === cpu);
  const onTime = sections.filter((r) => !excusedByLateTimer(r)).length;
  console.log(`sampled histogram, cpu ${cpu}: ${hist?.count ?? 0n} sections in ${samples} samples; selftest sections ${sections.length}, ${onTime} with the timer on time`);
  // 2 s busy and the sections: a sample every period, each one counted in samples.
  expect(samples).toBeGreaterThanOrEqual(BigInt(Math.floor(2e9 / periodNs / 2)));
  // Sections only: the selftest's (those its timer came on time for, at least) and the few the guest makes itself.
  expect(hist?.count ?? 0n).toBeGreaterThanOrEqual(BigInt(onTime));
  expect(hist?.count ?? 0n).toBeLessThanOrEqual(samples / 10n);
  // Each of length 2-3 ms (3 ms less up to a period, more when the timer came late): bucket 2^21 ns (2.1-4.2 ms) or next.
  expect((hist?.buckets[21] ?? 0n) + (hist?.buckets[22] ?? 0n)).toBeGreaterThanOrEqual(BigInt(onTime));
  // Cleared, it starts over: only what the moments since then brought (the guest makes sections of its own every few ms under TCG).
  await b.clear();
  const after = await b.stats();
  const afterHist = after.hists.find((h) => h.kind === Kind.IrqsOff && h.cpu === cpu);
  expect(afterHist?.count ?? 0n).toBeLessThan(hist?.count ?? 0n);
  expect(after.counters.find((c) => c.cpu === cpu)?.samples ?? 0n).toBeLessThan(samples);
  await b.setFloor(Number(LIMITS.floorNs.default));
}
