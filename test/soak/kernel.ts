// `npm run soak:kernel -- [--minutes N] [--mixed-minutes M] [--flavour tracing|debian]`:
// runs irqtrace.ko under stress-ng loads (CPU, memory, IO, timer/interrupt,
// then all mixed) in a QEMU guest and reports, per load: sections seen and
// recorded, records read, drops, kernel splats (WARN/BUG/Oops/lockdep/RCU
// stalls), kmemleak findings where the kernel has kmemleak, and slab/vmalloc
// growth across a final unload. Not part of `npm test`: it runs for as long
// as it is told.
import { parseArgs } from 'node:util';
import { Vm } from '../vm/vm.js';
import { Rig } from '../../kmod/test/harness.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '3' },
    'mixed-minutes': { type: 'string', default: '10' },
    flavour: { type: 'string', default: 'tracing' },
  },
});
const minutes = Number(values.minutes);
const mixedMinutes = Number(values['mixed-minutes']);
const flavour = values.flavour === 'debian' ? 'debian' : 'tracing';

const SPLATS = /WARNING:|BUG:|Oops|general protection|lockdep|possible recursive locking|rcu_.*stall|RCU stall|soft lockup|hard LOCKUP|hung_task/;

// stress-ng runs from the host's root inside the guest; --temp-path is the guest's writable /run.
const loads: Record<string, string> = {
  cpu: '--cpu 2',
  memory: '--vm 2 --vm-bytes 64M',
  io: '--hdd 1 --hdd-bytes 16M --iomix 1',
  'timer/interrupt': '--timer 2 --timer-freq 20000 --clock 1',
  mixed: '--cpu 1 --vm 1 --vm-bytes 48M --hdd 1 --hdd-bytes 8M --timer 1 --timer-freq 10000 --clock 1',
};

async function meminfo(rig: Rig): Promise<Record<string, number>> {
  const text = await rig.vm.run('cat /proc/meminfo');
  return Object.fromEntries([...text.matchAll(/^(\w+):\s+(\d+)/gm)].map((m) => [m[1] ?? '', Number(m[2])]));
}

async function main(): Promise<void> {
  if (!(await import('node:fs')).existsSync('/usr/bin/stress-ng')) {
    throw new Error('stress-ng is not installed on the host: apt-get install stress-ng (test/setup does)');
  }
  console.log(`soak:kernel on the ${flavour} kernel: ${minutes} min per single load, ${mixedMinutes} min mixed`);
  const vm = await Vm.boot({ flavour, memoryMb: 2048 });
  try {
    const rig = await Rig.create(vm);
    const kmemleak = (await vm.exec('test -f /sys/kernel/debug/kmemleak')).code === 0;
    const before = await meminfo(rig);
    await rig.load({ threshold_ns: 1_000_000, period_ns: 500_000 });
    console.log(`loaded: ${(await vm.run('dmesg | grep "irqtrace: tracing:" | tail -1')).trim()}; kmemleak ${kmemleak ? 'on' : 'not in this kernel'}`);
    console.log('\nload               minutes      seen  recorded      read  dropped_ring  dropped_guard  splats');
    for (const [name, args] of Object.entries(loads)) {
      const length = name === 'mixed' ? mixedMinutes : minutes;
      await vm.run('dmesg -c > /dev/null; echo clear > /dev/irqtrace_stats');
      await rig.startReader();
      const seconds = Math.round(length * 60);
      const stress = await vm.execHost(`stress-ng ${args} --temp-path /run/tmp --timeout ${seconds}s --metrics-brief 2>&1 | tail -3`, {
        timeoutMs: (seconds + 120) * 1000,
      });
      const recs = await rig.stopReader();
      const { counters } = await rig.stats();
      const sum = (k: 'seen' | 'recorded' | 'droppedRing' | 'droppedGuard') => counters.reduce((a, c) => a + c[k], 0n);
      const log = await vm.dmesg();
      const splats = log.split('\n').filter((l) => SPLATS.test(l));
      console.log(
        `${name.padEnd(18)} ${String(length).padStart(7)} ${String(sum('seen')).padStart(9)} ${String(sum('recorded')).padStart(9)} ` +
          `${String(recs.length).padStart(9)} ${String(sum('droppedRing')).padStart(13)} ${String(sum('droppedGuard')).padStart(14)} ${String(splats.length).padStart(7)}`,
      );
      if (stress.code !== 0) console.log(`  stress-ng: exit ${stress.code}: ${stress.stdout.trim()}`);
      for (const s of splats.slice(0, 5)) console.log(`  splat: ${s}`);
    }
    await rig.unload();
    await vm.run('sync; echo 3 > /proc/sys/vm/drop_caches');
    const after = await meminfo(rig);
    const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
    console.log(`\nafter unload: Slab ${delta('Slab')} kB, VmallocUsed ${delta('VmallocUsed')} kB, MemAvailable ${delta('MemAvailable')} kB (vs before load)`);
    if (kmemleak) {
      await vm.run('echo scan > /sys/kernel/debug/kmemleak');
      const leaks = (await vm.run('cat /sys/kernel/debug/kmemleak')).trim();
      console.log(`kmemleak: ${leaks ? leaks.split('\n').slice(0, 20).join('\n') : 'no leaks'}`);
    }
  } finally {
    await vm.stop();
  }
}

main().catch((err: unknown) => {
  console.error('soak:kernel failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
