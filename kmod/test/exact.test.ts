// The exact method on the project's tracing kernel (preemptirq tracepoints),
// against the selftest's ground truth.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kind, Method, RecordFlag } from '@irqtrace/agent';
import type { Kallsyms, SectionRecord } from '@irqtrace/agent';
import { Vm } from '../../test/vm/vm.js';
import { Rig, distribution, matching } from './harness.js';
import type { Report } from './harness.js';

const THRESHOLD_NS = 100_000;
const LENGTHS_US = [150, 1000, 5000];
const ROUNDS = 3;

let vm: Vm;
let rig: Rig;
let syms: Kallsyms;
let reports: Report[] = [];
let recs: SectionRecord[] = [];

beforeAll(async () => {
  // Probe registration patches kernel text: single-threaded TCG (see notes).
  vm = await Vm.boot({ flavour: 'tracing', singleThread: true });
  rig = await Rig.create(vm);
  await rig.load({ method: 'exact', threshold_ns: THRESHOLD_NS, softirqs: false, irqs: 'none' });
  await rig.startReader();
  const commands: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const us of LENGTHS_US) commands.push(`irqoff ${us} ${(round + us) % 2}`);
  }
  reports = await rig.irqburn(...commands);
  recs = await rig.stopReader();
  syms = await rig.kallsyms();
});

afterAll(async () => {
  await vm.stop();
});

describe('the exact method, on a kernel with the preemptirq tracepoints', () => {
  it('runs exact and loads clean', async () => {
    expect(await rig.get('method')).toBe('exact');
    expect(await vm.run('cat /sys/class/misc/irqtrace_stats/stats')).toMatch(/^irqs_off exact\n/);
  });

  it('records every selftest section exactly once, with its task, CPU and duration', () => {
    const errors: number[] = [];
    for (const report of reports) {
      const found = matching(recs, report, Kind.IrqsOff);
      expect(found, `one record for ${JSON.stringify(report.fields)}`).toHaveLength(1);
      const rec = found[0] as SectionRecord;
      expect(rec).toMatchObject({ method: Method.Exact, comm: 'irqburn', pid: report.pid, cpu: report.cpu, enableCpu: report.cpu });
      errors.push(Number(rec.durationNs - report.durationNs));
    }
    console.log(`exact: irqtrace - selftest duration error (ns): ${distribution(errors)}`);
    reports.forEach((report, i) => {
      const error = errors[i] ?? NaN;
      const tolerance = Math.max(5_000, Number(report.durationNs) / 100);
      expect(Math.abs(error), `error of ${error} ns on ${report.durationNs} ns`).toBeLessThanOrEqual(tolerance);
    });
  });

  it('names the selftest function in the disable and enable sites and in the stack', () => {
    for (const report of reports) {
      const rec = matching(recs, report, Kind.IrqsOff)[0] as SectionRecord;
      expect(rec.flags & RecordFlag.SitesValid).toBeTruthy();
      expect(syms.lookup(rec.disableIp)?.name).toMatch(/^irqburn_irqs_off/);
      expect(syms.lookup(rec.enableIp)?.name).toMatch(/^irqburn_irqs_off/);
      const stack = rec.frames.map((f) => syms.lookup(f)?.name ?? '?');
      expect(stack[0]).toMatch(/^irqburn_irqs_off/);
      // The writer's path: the selftest's write handler, then the write syscall.
      expect(stack.join(' ')).toMatch(/^irqburn_irqs_off\S* (run_command\S* )?selftest_write .*vfs_write/);
    }
  });

  it('keeps sections under the threshold out of the records but in the right histogram bucket', async () => {
    const cpu = 1;
    const before = await rig.stats();
    const burns = await rig.irqburn(...Array.from({ length: 10 }, () => `irqoff 20 ${cpu}`));
    const after = await rig.stats();
    const bucketOf = (ns: bigint) => ns.toString(2).length - 1;
    const hist = (s: typeof before) => s.hists.find((h) => h.kind === Kind.IrqsOff && h.cpu === cpu);
    // Each burn lands in the bucket of its own length (its log2), give or take the probes' cost.
    const wanted = new Map<number, number>();
    for (const b of burns) wanted.set(bucketOf(b.durationNs), (wanted.get(bucketOf(b.durationNs)) ?? 0) + 1);
    for (const [bucket, n] of wanted) {
      const grew = Number((hist(after)?.buckets[bucket] ?? 0n) - (hist(before)?.buckets[bucket] ?? 0n));
      expect(grew, `bucket ${bucket} (${2 ** bucket} ns)`).toBeGreaterThanOrEqual(n);
    }
    await rig.startReader();
    const recsNow = await rig.stopReader();
    for (const b of burns) {
      // A host stall can stretch a 20 µs burn past the threshold; judge the ones that stayed under.
      if (b.durationNs < BigInt(THRESHOLD_NS) / 2n) expect(matching(recsNow, b, Kind.IrqsOff)).toHaveLength(0);
    }
    expect(burns.filter((b) => b.durationNs < BigInt(THRESHOLD_NS) / 2n).length).toBeGreaterThanOrEqual(burns.length / 2);
  });
});
