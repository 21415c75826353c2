// Drives irqtrace.ko and the selftest module in a guest, for the kernel tests.
import { cpSync, existsSync } from 'node:fs';
import { expect } from 'vitest';
import { join, relative, sep } from 'node:path';
import { Context, decodeAll, decodeItems, Edge, Kallsyms, Kind } from '@irqtrace/agent';
import type { CountersItem, HistItem, Item, SectionRecord } from '@irqtrace/agent';
import { repoRoot, scratchDir } from '../../test/lib/paths.js';
import { buildModule } from '../../test/vm/kernels.js';
import type { Kernel } from '../../test/vm/kernels.js';
import type { Vm } from '../../test/vm/vm.js';

export interface Modules {
  irqtrace: string;
  selftest: string;
  /** Empty probes where irqtrace hooks, the benchmark's floor: hooks=tracepoints (tracing kernel only) or hooks=locks. */
  floor: string;
  irqburn: string;
}

const built = new Map<string, Modules>();

/** Builds kmod/ and kmod/selftest/ against kernel k (once per test run). */
export async function buildKmod(k: Kernel): Promise<Modules> {
  const known = built.get(k.dir);
  if (known) return known;
  const dir = scratchDir(`kmod-${k.flavour}`);
  const kmodDir = join(repoRoot, 'kmod');
  // Judge by the path inside kmod/: the clone itself may live under a folder named test.
  cpSync(kmodDir, dir, { recursive: true, filter: (src) => relative(kmodDir, src).split(sep)[0] !== 'test' });
  await buildModule(k, dir);
  await buildModule(k, join(dir, 'selftest'));
  const modules = {
    irqtrace: join(dir, 'irqtrace.ko'),
    selftest: join(dir, 'selftest', 'irqtrace_selftest.ko'),
    floor: join(dir, 'selftest', 'irqtrace_floor.ko'),
    irqburn: join(dir, 'selftest', 'irqburn'),
  };
  for (const file of Object.values(modules)) if (!existsSync(file)) throw new Error(`build made no ${file}`);
  built.set(k.dir, modules);
  return modules;
}

export type Params = Record<string, string | number | boolean>;

/** key=value words: module parameters and the eBPF loader's settings alike. */
export function paramString(params: Params): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${typeof v === 'boolean' ? (v ? 1 : 0) : v}`)
    .join(' ');
}

/** A guest with the modules built and the selftest loaded. */
export class Rig {
  private constructor(
    readonly vm: Vm,
    readonly modules: Modules,
  ) {}

  static async create(vm: Vm): Promise<Rig> {
    const modules = await buildKmod(vm.kernel);
    await vm.run(`insmod ${vm.hostPath(modules.selftest)} && cp ${vm.hostPath(modules.irqburn)} /tmp/irqburn`);
    return new Rig(vm, modules);
  }

  async load(params: Params = {}): Promise<void> {
    await this.vm.run(`insmod ${this.vm.hostPath(this.modules.irqtrace)} ${paramString(params)}`);
  }

  /** insmod's result, for tests of refusals. */
  async tryLoad(params: Params): Promise<{ code: number; stderr: string }> {
    const r = await this.vm.exec(`insmod ${this.vm.hostPath(this.modules.irqtrace)} ${paramString(params)}`);
    return { code: r.code, stderr: r.stderr };
  }

  async unload(): Promise<void> {
    await this.vm.run('rmmod irqtrace');
  }

  /** Writes a parameter at run time; returns the write's exit code and error. */
  async set(name: string, value: string | number): Promise<{ code: number; stderr: string }> {
    const r = await this.vm.exec(`echo '${value}' > /sys/module/irqtrace/parameters/${name}`);
    return { code: r.code, stderr: r.stderr };
  }

  async get(name: string): Promise<string> {
    return (await this.vm.run(`cat /sys/module/irqtrace/parameters/${name}`)).trim();
  }

  /** Starts a background reader of /dev/irqtrace into a guest file. */
  async startReader(): Promise<void> {
    // $! must be cat itself: a subshell's pid would leave cat running, still writing.
    await this.vm.run('rm -f /tmp/records.bin; cat /dev/irqtrace > /tmp/records.bin 2>/tmp/reader.err & echo $! > /tmp/reader.pid');
  }

  /**
   * Stops the reader after the poll interval has passed; returns every record
   * it read. A kill that lands mid-write (records still streaming) leaves a
   * partial last record in the file: it is dropped, as a real reader never
   * sees one.
   */
  async stopReader(): Promise<SectionRecord[]> {
    await this.vm.run('sleep 0.2; kill $(cat /tmp/reader.pid); while kill -0 $(cat /tmp/reader.pid) 2>/dev/null; do sleep 0.05; done');
    return records(decodeItems(await this.vm.readFile('/tmp/records.bin')).items);
  }

  /** Runs selftest commands from a process named irqburn; returns its reports. */
  async irqburn(...commands: string[]): Promise<Report[]> {
    const quoted = commands.map((c) => `'${c}'`).join(' ');
    const out = await this.vm.run(`/tmp/irqburn ${quoted}`);
    return out.trim().split('\n').map(parseReport);
  }

  async stats(): Promise<{ counters: CountersItem[]; hists: HistItem[] }> {
    await this.vm.run('cat /dev/irqtrace_stats > /tmp/stats.bin');
    const items = decodeAll(await this.vm.readFile('/tmp/stats.bin'));
    return {
      counters: items.filter((i): i is CountersItem => i.type === 'counters'),
      hists: items.filter((i): i is HistItem => i.type === 'hist'),
    };
  }

  async kallsyms(): Promise<Kallsyms> {
    return Kallsyms.parse(await this.vm.run('cat /proc/kallsyms', { timeoutMs: 120_000 }));
  }
}

export function records(items: Item[]): SectionRecord[] {
  return items.filter((i): i is SectionRecord => i.type === 'record');
}

export interface Report {
  op: string;
  cpu: number;
  pid: number;
  comm: string;
  startNs: bigint;
  durationNs: bigint;
  fields: Record<string, string>;
}

function parseReport(line: string): Report {
  const fields: Record<string, string> = {};
  for (const word of line.trim().split(/\s+/)) {
    const eq = word.indexOf('=');
    if (eq > 0) fields[word.slice(0, eq)] = word.slice(eq + 1);
  }
  const need = (k: string) => {
    const v = fields[k];
    if (v === undefined) throw new Error(`selftest report without ${k}: ${line}`);
    return v;
  };
  return {
    op: need('op'),
    cpu: Number(need('cpu')),
    pid: Number(need('pid')),
    comm: need('comm'),
    startNs: BigInt(need('start_ns')),
    durationNs: BigInt(need('duration_ns')),
    fields,
  };
}

/** Records of the report's task whose span overlaps the report's span. */
export function matching(recs: SectionRecord[], report: Report, kind: Kind): SectionRecord[] {
  const end = report.startNs + report.durationNs;
  return recs.filter(
    (r) => r.kind === kind && r.pid === report.pid && r.startNs < end && r.startNs + r.durationNs > report.startNs,
  );
}

/** min/median/max of a list of numbers, for error distributions in test output. */
export function distribution(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return `n=${sorted.length} min=${at(0)} p50=${at(0.5)} p90=${at(0.9)} max=${at(1)}`;
}

/** The middle value (the upper of the two middle ones for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** Lengths (µs) of the exact method's selftest sections: shorter than a tick, one tick, several. */
export const EXACT_LENGTHS_US = [150, 1000, 5000];

/** Selftest commands for rounds of each exact length, alternating between the two CPUs. */
export function exactWorkload(rounds: number): string[] {
  const commands: string[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const us of EXACT_LENGTHS_US) commands.push(`irqoff ${us} ${commands.length % 2}`);
  }
  return commands;
}

/** Each exact length's errors (errors[i] belongs to reports[i]). */
export function errorsByLength(reports: Report[], errors: number[]): Map<number, number[]> {
  const nominalUs = (report: Report) => EXACT_LENGTHS_US.filter((us) => Number(report.durationNs) / 1000 >= us).at(-1);
  return new Map(EXACT_LENGTHS_US.map((us) => [us, errors.filter((_, i) => reports[i] && nominalUs(reports[i]) === us)]));
}

/**
 * What an exact tracer may add to the median section of a length: its probes'
 * cost, 5 µs, or 1 % of the section. Under TCG the probes cost more at the end
 * of a long section (measured: the module 1.5-2.2 µs on 150 µs sections and
 * 3.4-5.0 µs on 5 ms ones, the eBPF programs 1.7-2.6 and 6.3-9.6 µs), likely
 * because a timer interrupt is then pending and QEMU checks for it at every
 * translated block.
 */
export function exactOverheadToleranceNs(us: number): number {
  return Math.max(5_000, (us * 1_000) / 100);
}

/**
 * How late the guest's timer interrupt came in a selftest section run with a
 * witness (its timer_late_ns): Infinity if it never came, NaN without a witness.
 */
export function timerLateNs(report: Report): number {
  const late = report.fields.timer_late_ns;
  if (late === undefined) return NaN;
  return Number(late) < 0 ? Infinity : Number(late);
}

/**
 * Sections a sampler cannot be held to: the selftest's witness timer came late (200 µs and more,
 * where 0 for irqs off and 30-75 µs for softirqs off is usual under TCG). The sampler's interrupts
 * come the same way (one clock event device serves every hrtimer on a CPU), so its samples of the
 * section can come after it ended, in whatever ran then: a 3 ms section on a busy host has had no
 * record with its witness 1.9 ms late, and none with it 0.26 ms late (its sampler's timer later
 * still). On hardware that is µs; under TCG QEMU's main loop delivers them, ms late when the host
 * is busy.
 */
export const excusedByLateTimer = (report: Report) => timerLateNs(report) >= 200_000;

/** The value, or a failed test saying what was missing. */
export function must<T>(value: T | undefined, what = 'value'): T {
  if (value === undefined) throw new Error(`no ${what}`);
  return value;
}

/**
 * Whether an irq-line section starting at startNs is the selftest's masking
 * in report: the disable hook fires between the selftest's clock reads
 * around the first disable_irq() (1 µs of slack for the clock reads). The
 * selftest's own warm-up masking, just before, starts outside.
 */
export function startsMasking(report: Report, startNs: bigint): boolean {
  const disableReturned = report.startNs + report.durationNs - BigInt(report.fields.inner_ns ?? '0');
  return startNs >= report.startNs - 1_000n && startNs <= disableReturned + 1_000n;
}

/**
 * Irqs-off records on the report's CPU that overlap its section, whoever the
 * task (the selftest's hardirq and softirq commands run on an idle CPU).
 */
export function onCpuDuring(recs: SectionRecord[], report: Report, slackNs = 0n): SectionRecord[] {
  const end = report.startNs + report.durationNs + slackNs;
  return recs.filter((r) => r.kind === Kind.IrqsOff && r.cpu === report.cpu && r.startNs < end && r.startNs + r.durationNs > report.startNs);
}

/**
 * Selftest commands that make sections of interrupt context on an idle CPU 1, us long: a hard
 * hrtimer callback, an irqs-off section in a softirq; three of each. Each callback has an empty
 * timer run right after it in the same interrupt (tail), as the tick does when it fell due
 * meanwhile: a sampler's late sample comes after both and must still name the long one.
 */
export function interruptWorkload(us: number): string[] {
  return [0, 1, 2].flatMap(() => [`hardirq ${us} 1 1`, `softirq ${us} 1`, `ipi ${us} 1`, `irqwork ${us} 1`]);
}

/** No IPI to a CPU idle and polling: its idle loop ran the selftest's function, in the idle task, no interrupt. */
export function ranInIdleLoop(report: Report): boolean {
  return report.fields.hardirq === '0';
}

/** The x86 vectors whose handlers run the selftest's ipi and irqwork (CALL_FUNCTION_SINGLE, IRQ_WORK). */
const SELFTEST_VECTORS: Readonly<Record<string, number>> = { ipi: 0xfb, irqwork: 0xf6 };

/** Whether rec names the handler the selftest's report ran its section in. */
function inReportsHandler(report: Report, rec: SectionRecord, syms: Kallsyms): boolean {
  if (report.op === 'hardirq' && rec.context === Context.Timer) {
    const fn = syms.lookup(rec.contextFn)?.name;
    // The longest callback names the section. The tail is empty: longer than the busy-wait only
    // if the host stopped the guest's vCPU inside it, which the guest cannot tell from its own work.
    if (fn === 'irqburn_tail_fn' && rec.durationNs >= 2n * report.durationNs) {
      console.log(`hardirq: named by its empty tail, which the host stalled (the section ${rec.durationNs} ns for a ${report.durationNs} ns callback): ${JSON.stringify(report.fields)}`);
      return true;
    }
    return fn === 'irqburn_hardirq_fn';
  }
  if (report.op === 'hardirq') return false;
  if (report.op === 'softirq') return rec.context === Context.Softirq && rec.contextNr === 8;
  return rec.context === Context.Vector && rec.contextNr === SELFTEST_VECTORS[report.op];
}

/**
 * The workload's interrupt-context sections recorded as their handler's (TIMER:
 * irqburn_hardirq_fn; SOFTIRQ: vector 8, HRTIMER; VECTOR: CALL_FUNCTION_SINGLE for an IPI's
 * function, IRQ_WORK for an irq_work, which pass no irq_handler_entry) and at least as long as the section less
 * shortBy (a sampler's period): each report's longest such record, one for every report;
 * none in their window taken for the idle loop's. (The guest's own sections in the same
 * contexts, the tick's or other timers' in the HRTIMER softirq, may come near: not counted.)
 */
export function expectInterruptContexts(recs: SectionRecord[], reports: Report[], syms: Kallsyms, o: { slackNs: bigint; shortByNs?: bigint }): Map<Report, SectionRecord> {
  const found = new Map<Report, SectionRecord>();
  const misses: string[] = [];
  for (const report of reports) {
    if (report.op === 'hardirq') expect(report.fields.tail, `the tail timer ran after ${JSON.stringify(report.fields)}`).toBe('1');
    if (ranInIdleLoop(report)) {
      console.log(`${report.op}: not judged, the target CPU's idle loop ran it (it was polling, no IPI sent): ${JSON.stringify(report.fields)}`);
      continue;
    }
    const during = onCpuDuring(recs, report, o.slackNs);
    const theirs = during
      .filter((r) => inReportsHandler(report, r, syms))
      .filter((r) => r.durationNs >= report.durationNs - (o.shortByNs ?? 0n))
      .sort((a, b) => Number(b.durationNs - a.durationNs));
    expect(during.filter((r) => r.context === Context.Task && r.pid === 0), `no idle-loop record for ${report.op}`).toEqual([]);
    // A sampled section twice the handler's or more: the host stopped the guest's vCPU around it
    // (single-threaded TCG runs one vCPU at a time), and the method names what ran for at least
    // half of that, which the handler no longer did: the guest cannot tell the host's time from
    // its own work (the same excuse as the hardirq's empty tail, inReportsHandler()).
    const stalled = during.find((r) => r.startBy === Edge.Sample && r.durationNs >= 2n * report.durationNs && r.startNs <= report.startNs);
    if (theirs[0]) found.set(report, theirs[0]);
    else if (stalled) console.log(`${report.op}: named ${Context[stalled.context]} ${stalled.contextNr} by a sampled section the host stretched (${stalled.durationNs} ns for a ${report.durationNs} ns handler): ${JSON.stringify(report.fields)}`);
    else if (excusedByLateTimer(report)) console.log(`${report.op}: no record, the guest's timer interrupts came ${timerLateNs(report) / 1e6} ms late (the witness): ${JSON.stringify(report.fields)}`);
    else misses.push(`${JSON.stringify(report.fields)}: on its CPU then ${JSON.stringify(during.map((r) => ({ context: r.context, nr: r.contextNr, fn: syms.lookup(r.contextFn)?.name, pid: r.pid, startNs: String(r.startNs), durationNs: String(r.durationNs) })))}`);
  }
  expect(misses, 'every interrupt-context section recorded as its handler\'s').toEqual([]);
  for (const op of new Set(reports.map((r) => r.op))) {
    expect([...found.keys()].some((r) => r.op === op), `some ${op} section judged: every one ran from a polling idle loop`).toBe(true);
  }
  return found;
}

/**
 * A tracer's measurement of a burn lies between its inner and outer clocks: where both fall in
 * one log2 bucket, the CPU's histogram must have grown by that burn there. Burns the host
 * stretched across buckets are left out; at least half must remain.
 */
export function expectBucketed(burns: Report[], before: HistItem | undefined, after: HistItem | undefined): void {
  const bucketOf = (ns: bigint) => ns.toString(2).length - 1;
  const wanted = new Map<number, number>();
  for (const b of burns) {
    const bucket = bucketOf(b.durationNs);
    if (bucket === bucketOf(BigInt(b.fields.outer_ns ?? '0'))) wanted.set(bucket, (wanted.get(bucket) ?? 0) + 1);
  }
  expect([...wanted.values()].reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(Math.ceil(burns.length / 2));
  for (const [bucket, n] of wanted) {
    const grew = Number((after?.buckets[bucket] ?? 0n) - (before?.buckets[bucket] ?? 0n));
    expect(grew, `bucket ${bucket} (${2 ** bucket} ns)`).toBeGreaterThanOrEqual(n);
  }
}
