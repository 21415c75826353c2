// irqtrace.ko's life: run-time reconfiguration, refusal of bad parameters,
// exact drop accounting, and load/unload cycles under interrupt-heavy load.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Kind, Method } from '@irqtrace/agent';
import { Vm } from '../../test/vm/vm.js';
import { Rig, matching, must } from './harness.js';
import type { Params } from './harness.js';

const SPLATS = /WARNING:|BUG:|Oops|general protection|lockdep|possible recursive locking|RCU stall|rcu_.*stall|Call Trace/;

describe('on the tracing kernel', () => {
  let vm: Vm;
  let rig: Rig;

  beforeAll(async () => {
    vm = await Vm.boot({ flavour: 'tracing' });
    rig = await Rig.create(vm);
  });

  afterAll(async () => {
    await vm.stop();
  });

  // A failed test must not leave the module loaded for the next one.
  afterEach(async () => {
    await vm.exec('rmmod irqtrace 2>/dev/null');
  });

  it('applies a new threshold and method at run time, without reloading', async () => {
    await rig.load({ method: 'exact', threshold_ns: 50_000_000, softirqs: false, irqs: 'none' });
    await rig.startReader();
    const [quiet] = await rig.irqburn('irqoff 3000 1');
    expect(await rig.set('threshold_ns', 1_000_000)).toMatchObject({ code: 0 });
    const [exact] = await rig.irqburn('irqoff 3000 1');
    expect(await rig.set('method', 'sampled')).toMatchObject({ code: 0 });
    expect(await vm.run('cat /sys/class/misc/irqtrace_stats/stats')).toMatch(/^irqs_off sampled\n/);
    const [sampled] = await rig.irqburn('irqoff 5000 1');
    expect(await rig.set('method', 'exact')).toMatchObject({ code: 0 });
    const [exactAgain] = await rig.irqburn('irqoff 3000 0');
    const recs = await rig.stopReader();

    expect(matching(recs, must(quiet), Kind.IrqsOff)).toHaveLength(0);
    expect(matching(recs, must(exact), Kind.IrqsOff)).toMatchObject([{ method: Method.Exact, comm: 'irqburn' }]);
    expect(matching(recs, must(sampled), Kind.IrqsOff)).toMatchObject([{ method: Method.Sampled, comm: 'irqburn' }]);
    expect(matching(recs, must(exactAgain), Kind.IrqsOff)).toMatchObject([{ method: Method.Exact, comm: 'irqburn' }]);
    // One load all along: the kernel logged a single start.
    expect((await vm.dmesg()).match(/irqtrace: tracing:/g)).toHaveLength(1);
    await rig.unload();
  });

  it('wakes a blocked reader when a record comes, and runs nothing while none does', async () => {
    await rig.load({ method: 'exact', threshold_ns: 50_000_000, softirqs: false, irqs: 'none' });
    await rig.startReader();
    // The function tracer on every traceable function of the module (its probes are notrace):
    // with a reader blocked and no record coming, none may run (the landed module polled every 10 ms).
    const T = '/sys/kernel/tracing';
    await vm.run(`echo 0 > ${T}/tracing_on; echo > ${T}/trace; echo ':mod:irqtrace' > ${T}/set_ftrace_filter; echo function > ${T}/current_tracer; echo 1 > ${T}/tracing_on`);
    await new Promise((r) => setTimeout(r, 2000));
    await vm.run(`echo 0 > ${T}/tracing_on`);
    const calls = (await vm.run(`grep -v '^#' ${T}/trace | awk '{print $(NF-1), $NF}' | sort | uniq -c | sort -rn | head; true`)).trim();
    await vm.run(`echo nop > ${T}/current_tracer; echo > ${T}/set_ftrace_filter`);
    expect(calls, 'module functions that ran in 2 s of nothing to read').toBe('');
    // A record comes: the blocked reader gets it (woken from the writer's irq_work).
    expect(await rig.set('threshold_ns', 1_000_000)).toMatchObject({ code: 0 });
    const [section] = await rig.irqburn('irqoff 3000 1');
    const recs = await rig.stopReader();
    expect(matching(recs, must(section), Kind.IrqsOff)).toHaveLength(1);
    expect(await vm.run('cat /tmp/reader.err')).toBe('');

    // "wake" ends the blocked read with 0 (end of file: cat exits 0) and keeps the file open
    // till then: a reader stops its reads before it closes (issue 29, item 7).
    await rig.startReader();
    await new Promise((r) => setTimeout(r, 500));
    expect(await vm.run('kill -0 $(cat /tmp/reader.pid) && echo blocked')).toBe('blocked\n');
    expect(await vm.run('echo wake > /dev/irqtrace_stats; for i in $(seq 40); do kill -0 $(cat /tmp/reader.pid) 2>/dev/null || break; sleep 0.05; done; kill -0 $(cat /tmp/reader.pid) 2>/dev/null && echo running || echo ended')).toBe('ended\n');
    expect(await vm.run('wait $(cat /tmp/reader.pid) 2>/dev/null; cat /tmp/reader.err')).toBe('');
    await rig.unload();
  });

  it('hooks its context probes only while something reads them (issue 29, item 5)', async () => {
    // The function tracer on the kernel's tracepoint (un)registration: in this test only the
    // module's context probes register (sampled uses timers, irq lines ftrace callbacks).
    const T = '/sys/kernel/tracing';
    await vm.run(`echo 0 > ${T}/tracing_on; echo > ${T}/trace; echo 'tracepoint_probe_register tracepoint_probe_unregister' > ${T}/set_ftrace_filter; echo function > ${T}/current_tracer; echo 1 > ${T}/tracing_on`);
    /** Registrations and unregistrations since the last call. */
    const hooks = async (): Promise<{ register: number; unregister: number }> => {
      const names = (await vm.run(`grep -v '^#' ${T}/trace | grep -o ' tracepoint_probe_[a-z]*' ; echo > ${T}/trace`)).split(/\s+/);
      return { register: names.filter((n) => n === 'tracepoint_probe_register').length, unregister: names.filter((n) => n === 'tracepoint_probe_unregister').length };
    };
    // irq, softirq, hrtimer_expire entry and exit, and x86's vectors' (irq_vectors: <name>_entry/_exit).
    const vectors = Number((await vm.run(`ls ${T}/events/irq_vectors | grep -c '_entry$'; true`)).trim());
    const all = 6 + 2 * vectors;
    try {
      // Nothing to measure: no interrupt pays for a probe (the landed module hooked them all).
      await rig.load({ method: 'off', softirqs: false, irqs: 'none' });
      expect(await hooks(), 'method=off softirqs=0 irqs=none').toEqual({ register: 0, unregister: 0 });
      expect(await rig.set('method', 'sampled')).toMatchObject({ code: 0 });
      expect(await hooks(), 'method=sampled').toEqual({ register: all, unregister: 0 });
      expect(await rig.set('method', 'off')).toMatchObject({ code: 0 });
      expect(await hooks(), 'method=off again').toEqual({ register: 0, unregister: all });
      // Softirqs-off sampling alone, and irq lines alone, read the context too.
      expect(await rig.set('softirqs', 1)).toMatchObject({ code: 0 });
      expect(await hooks(), 'softirqs=1').toEqual({ register: all, unregister: 0 });
      expect(await rig.set('softirqs', 0)).toMatchObject({ code: 0 });
      expect(await hooks(), 'softirqs=0').toEqual({ register: 0, unregister: all });
      expect(await rig.set('irqs', 'all')).toMatchObject({ code: 0 });
      expect(await hooks(), 'irqs=all').toEqual({ register: all, unregister: 0 });
      await rig.unload();
      expect(await hooks(), 'rmmod').toEqual({ register: 0, unregister: all });
    } finally {
      await vm.run(`echo 0 > ${T}/tracing_on; echo nop > ${T}/current_tracer; echo > ${T}/set_ftrace_filter; echo 1 > ${T}/tracing_on`);
    }
  });

  it('refuses bad parameters at load and at run time, saying why', async () => {
    const refusals: [Record<string, string | number>, RegExp][] = [
      [{ threshold_ns: 5 }, /threshold_ns=5 refused: expected a number of ns from 1000 to/],
      [{ method: 'fast' }, /method=fast refused: expected auto, exact, hybrid, sampled or off/],
      [{ period_ns: 99_999 }, /period_ns=99999 refused/],
      [{ ring_records: 1000 }, /ring_records=1000 refused: expected a power of 2/],
      [{ irqs: '4,99999' }, /irqs=4,99999 refused: '99999' is not an IRQ number/],
      [{ cpus: '5-9' }, /cpus=5-9 refused: expected all or a list of possible CPUs/],
      [{ stacks: 'maybe' }, /stacks=maybe refused: expected 0 or 1/],
    ];
    for (const [params, why] of refusals) {
      const result = await rig.tryLoad(params);
      expect(result.code, JSON.stringify(params)).not.toBe(0);
      expect(result.stderr).toMatch(/invalid (argument|parameters)/i);
      expect(await vm.run('dmesg | tail -n 5')).toMatch(why);
      expect(await vm.exec('test -d /sys/module/irqtrace')).toMatchObject({ code: 1 });
    }

    await rig.load({ method: 'exact', threshold_ns: 1_000_000 });
    for (const [name, value, why] of [
      ['threshold_ns', 'soon', /threshold_ns=soon refused/],
      ['method', 'bogus', /method=bogus refused/],
      ['period_ns', 5_000_000_000, /period_ns=5000000000 refused/],
      ['irqs', '-1', /irqs=-1 refused/],
    ] as const) {
      const result = await rig.set(name, value);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/invalid argument/i);
      expect(await vm.run('dmesg | tail -n 3')).toMatch(why);
    }
    // Nothing changed, and the module still works.
    expect(await rig.get('threshold_ns')).toBe('1000000');
    expect(await rig.get('method')).toBe('exact');
    await rig.unload();
  });

  it('counts every record it could not keep when nobody reads', async () => {
    // 2^17 ns: a bucket boundary, so "at or above the threshold" is a sum of whole buckets.
    const threshold = 2 ** 17;
    await rig.load({ method: 'exact', threshold_ns: threshold, softirqs: false, irqs: 'none', ring_records: 16 });
    await rig.irqburn(...Array.from({ length: 40 }, () => 'irqoff 300 1'));
    expect(await rig.set('method', 'off')).toMatchObject({ code: 0 });
    const { counters, hists } = await rig.stats();
    await rig.startReader();
    const recs = await rig.stopReader();
    for (const c of counters) {
      const hist = hists.find((h) => h.kind === Kind.IrqsOff && h.cpu === c.cpu);
      const atOrAbove = (hist?.buckets ?? []).slice(17).reduce((a, b) => a + b, 0n);
      expect(c.recorded + c.droppedRing, `cpu ${c.cpu}`).toBe(atOrAbove);
      expect(c.recorded).toBeLessThanOrEqual(16n);
      expect(BigInt(recs.filter((r) => r.cpu === c.cpu).length)).toBe(c.recorded);
    }
    expect(counters.find((c) => c.cpu === 1)?.droppedRing).toBeGreaterThanOrEqual(24n);

    // Clearing zeroes everything (and a write-only open must not free what it never allocated).
    await vm.run('dmesg -c > /dev/null; echo clear > /dev/irqtrace_stats');
    const cleared = await rig.stats();
    for (const c of cleared.counters) expect([c.seen, c.recorded, c.droppedRing]).toEqual([0n, 0n, 0n]);
    for (const h of cleared.hists) expect(h.count).toBe(0n);
    const refused = await vm.exec('echo reset > /dev/irqtrace_stats');
    expect(refused.code).not.toBe(0);
    const log = await vm.dmesg();
    expect(log).toMatch(/the commands are "clear" and "wake"/);
    expect(log).not.toMatch(SPLATS);
    await rig.unload();
  });

  it('loads and unloads 50 times under interrupt-heavy load with a clean kernel log', async () => {
    await vm.run('dmesg -c > /dev/null');
    await vm.run(
      '(while :; do /tmp/irqburn "irqoff 30 0" "bhoff 30 1" "irqoff 20 1" > /dev/null; done) > /dev/null 2>&1 & echo $! > /tmp/load1.pid;' +
        '(while :; do dd if=/dev/zero bs=4k count=256 2>/dev/null | cat > /dev/null; done) > /dev/null 2>&1 & echo $! > /tmp/load2.pid',
    );
    try {
      for (let i = 0; i < 50; i++) {
        const params: Params = i % 2 ? { method: 'exact', threshold_ns: 20_000 } : { method: 'sampled', period_ns: 100_000, threshold_ns: 20_000 };
        await rig.load(params);
        if (i % 5 === 0) {
          await rig.startReader();
          await rig.stopReader();
        }
        await rig.unload();
      }
    } finally {
      await vm.run('kill $(cat /tmp/load1.pid) $(cat /tmp/load2.pid)');
    }
    const log = await vm.dmesg();
    expect(log.match(/irqtrace: tracing:/g)).toHaveLength(50);
    expect(log).not.toMatch(SPLATS);
  });
});
