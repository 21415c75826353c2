// `npm run bench:kernel`: what each irqs-off tracer costs per
// local_irq_save/restore pair, measured side by side in one tracing-kernel
// guest, and what the hybrid method's lock hooks cost per
// spin_lock_irqsave/spin_unlock_irqrestore pair against empty callbacks on
// the same functions. Configurations run interleaved (round-robin, so drift
// in the host's load hits them all alike), each rep times 10^6 pairs in the
// kernel; the figure per configuration is the median of its reps. Under TCG
// the ns are emulated ns: only the ratios mean anything.
import { Vm } from '../vm/vm.js';
import { Rig } from '../../kmod/test/harness.js';
import { BpfLoader } from '../../kmod/test/bpf_loader.js';
import { waitUntil } from '../lib/wait.js';

const PAIRS = 1_000_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const THRESHOLD_US = 100;

interface Config {
  name: string;
  on: (rig: Rig) => Promise<void>;
  off: (rig: Rig) => Promise<void>;
  /** The selftest's benchmark this one is timed with: irqs-off pairs, or lock pairs. */
  bench?: 'bench' | 'benchlock';
}

let loader: BpfLoader | undefined;
const criticalstat = '/run/tmp/criticalstat';

const tracing = '/sys/kernel/tracing';
const configs: Config[] = [
  { name: 'none', on: async () => {}, off: async () => {} },
  {
    name: 'empty',
    on: async (rig) => { await rig.vm.run(`insmod ${rig.vm.hostPath(rig.modules.floor)}`); },
    off: async (rig) => { await rig.vm.run('rmmod irqtrace_floor'); },
  },
  {
    name: 'irqtrace',
    on: (rig) => rig.load({ method: 'exact', threshold_ns: THRESHOLD_US * 1000, softirqs: false, irqs: 'none' }),
    off: (rig) => rig.unload(),
  },
  {
    name: 'irqsoff',
    on: async (rig) => {
      await rig.vm.run(`echo 0 > ${tracing}/options/function-trace; echo ${THRESHOLD_US} > ${tracing}/tracing_thresh; echo irqsoff > ${tracing}/current_tracer`);
    },
    off: async (rig) => {
      await rig.vm.run(`echo nop > ${tracing}/current_tracer; echo 0 > ${tracing}/tracing_thresh`);
    },
  },
  {
    name: 'ebpf',
    on: async (rig) => {
      loader ??= await BpfLoader.create(rig.vm);
      await loader.start({ method: 'exact', threshold_ns: THRESHOLD_US * 1000 });
    },
    off: async () => {
      await loader?.stop('TERM');
    },
  },
  {
    name: 'none-lock',
    bench: 'benchlock',
    on: async () => {},
    off: async () => {},
  },
  {
    name: 'empty-lock',
    bench: 'benchlock',
    on: async (rig) => { await rig.vm.run(`insmod ${rig.vm.hostPath(rig.modules.floor)} hooks=locks`); },
    off: async (rig) => { await rig.vm.run('rmmod irqtrace_floor'); },
  },
  {
    name: 'hybrid-lock',
    bench: 'benchlock',
    on: (rig) => rig.load({ method: 'hybrid', threshold_ns: THRESHOLD_US * 1000, softirqs: false, irqs: 'none' }),
    off: (rig) => rig.unload(),
  },
  {
    // bcc's criticalstat: the eBPF anchor. It compiles its program against the
    // kernel's IKHEADERS at each start (tens of seconds under TCG).
    name: 'criticalstat',
    on: async (rig) => {
      await rig.vm.execHost(
        `mkdir -p ${criticalstat}; (PYTHONUNBUFFERED=1 criticalstat-bpfcc -d ${THRESHOLD_US} > ${criticalstat}/out 2>&1 & echo $! > ${criticalstat}/pid) > /dev/null 2>&1`,
      );
      await waitUntil('criticalstat to attach', 300_000, async () => {
        const out = (await rig.vm.execHost(`cat ${criticalstat}/out; kill -0 $(cat ${criticalstat}/pid) || echo EXITED`)).stdout;
        if (/EXITED/.test(out)) throw new Error(`criticalstat exited: ${out}`);
        return /Finding critical section/.test(out);
      }, 1000);
    },
    off: async (rig) => {
      await rig.vm.execHost(`kill -TERM $(cat ${criticalstat}/pid); while kill -0 $(cat ${criticalstat}/pid) 2>/dev/null; do sleep 0.2; done`);
    },
  },
];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

async function main(): Promise<void> {
  console.log(`bench:kernel: booting the tracing kernel (single-threaded TCG, 2 vCPUs); ${ROUNDS} rounds x ${configs.length} configurations x ${PAIRS} pairs`);
  // criticalstat's bcc needs the room to unpack the kernel headers and compile.
  const vm = await Vm.boot({ flavour: 'tracing', memoryMb: 2048 });
  try {
    const rig = await Rig.create(vm);
    const perPair = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      const line: string[] = [];
      for (const config of configs) {
        await config.on(rig);
        const [report] = await rig.irqburn(`${config.bench ?? 'bench'} ${PAIRS}`);
        await config.off(rig);
        const ns = Number(report?.durationNs) / PAIRS;
        perPair.get(config.name)?.push(ns);
        line.push(`${config.name}=${ns.toFixed(0)}`);
      }
      console.log(`round ${round}/${ROUNDS}: ns/pair ${line.join(' ')}`);
    }
    const med = Object.fromEntries(configs.map((c) => [c.name, median(perPair.get(c.name) ?? [])])) as Record<string, number>;
    const none = med.none ?? NaN;
    const noneLock = med['none-lock'] ?? NaN;
    const over = (name: string) => (med[name] ?? NaN) - (name.endsWith('-lock') ? noneLock : none);
    console.log('\nconfiguration   median ns/pair   overhead over none (the -lock ones: over none-lock)');
    for (const c of configs) console.log(`${c.name.padEnd(15)} ${(med[c.name] ?? NaN).toFixed(0).padStart(14)}   ${over(c.name).toFixed(0).padStart(18)}`);
    const ratioIrqsoff = over('irqtrace') / over('irqsoff');
    const ratioEmpty = over('irqtrace') / over('empty');
    const ratioCriticalstat = over('ebpf') / over('criticalstat');
    const ratioHybrid = over('hybrid-lock') / over('empty-lock');
    const verdict = (ok: boolean) => (ok ? 'met' : 'missed');
    console.log(
      `\ntargets: irqtrace overhead <= 0.5x irqsoff (${verdict(ratioIrqsoff <= 0.5)}), <= 2x empty probe (${verdict(ratioEmpty <= 2)}); ` +
        `irqtrace-ebpf <= 0.5x criticalstat (${verdict(ratioCriticalstat <= 0.5)}); ` +
        `hybrid lock hooks per lock pair: ${ratioHybrid.toFixed(2)}x the empty callbacks`,
    );
    console.log(
      `bench:kernel empty=${over('empty').toFixed(0)} irqtrace=${over('irqtrace').toFixed(0)} irqsoff=${over('irqsoff').toFixed(0)} ` +
        `ratio_vs_irqsoff=${ratioIrqsoff.toFixed(2)} ratio_vs_empty=${ratioEmpty.toFixed(2)} ` +
        `ebpf=${over('ebpf').toFixed(0)} criticalstat=${over('criticalstat').toFixed(0)} ebpf_ratio_vs_criticalstat=${ratioCriticalstat.toFixed(2)} ` +
        `empty_lock=${over('empty-lock').toFixed(0)} hybrid_lock=${over('hybrid-lock').toFixed(0)} hybrid_ratio_vs_empty=${ratioHybrid.toFixed(2)}`,
    );
  } finally {
    await vm.stop();
  }
}

main().catch((err: unknown) => {
  console.error('bench:kernel failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
