// `npm run bench:kernel`: what each irqs-off tracer costs per
// local_irq_save/restore pair, measured side by side in one tracing-kernel
// guest. Configurations run interleaved (round-robin, so drift in the host's
// load hits them all alike), each rep times 10^6 pairs in the kernel; the
// figure per configuration is the median of its reps. Under TCG the ns are
// emulated ns: only the ratios mean anything.
import { Vm } from '../vm/vm.js';
import { Rig } from '../../kmod/test/harness.js';

const PAIRS = 1_000_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const THRESHOLD_US = 100;

interface Config {
  name: string;
  on: (rig: Rig) => Promise<void>;
  off: (rig: Rig) => Promise<void>;
}

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
];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

async function main(): Promise<void> {
  console.log(`bench:kernel: booting the tracing kernel (single-threaded TCG, 2 vCPUs); ${ROUNDS} rounds x ${configs.length} configurations x ${PAIRS} pairs`);
  const vm = await Vm.boot({ flavour: 'tracing', singleThread: true });
  try {
    const rig = await Rig.create(vm);
    const perPair = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      const line: string[] = [];
      for (const config of configs) {
        await config.on(rig);
        const [report] = await rig.irqburn(`bench ${PAIRS}`);
        await config.off(rig);
        const ns = Number(report?.durationNs) / PAIRS;
        perPair.get(config.name)?.push(ns);
        line.push(`${config.name}=${ns.toFixed(0)}`);
      }
      console.log(`round ${round}/${ROUNDS}: ns/pair ${line.join(' ')}`);
    }
    const med = Object.fromEntries(configs.map((c) => [c.name, median(perPair.get(c.name) ?? [])])) as Record<string, number>;
    const none = med.none ?? NaN;
    const over = (name: string) => (med[name] ?? NaN) - none;
    console.log('\nconfiguration   median ns/pair   overhead over none');
    for (const c of configs) console.log(`${c.name.padEnd(15)} ${(med[c.name] ?? NaN).toFixed(0).padStart(14)}   ${over(c.name).toFixed(0).padStart(18)}`);
    const ratioIrqsoff = over('irqtrace') / over('irqsoff');
    const ratioEmpty = over('irqtrace') / over('empty');
    console.log(`\ntargets: irqtrace overhead <= 0.5x irqsoff (${ratioIrqsoff <= 0.5 ? 'met' : 'missed'}), <= 2x empty probe (${ratioEmpty <= 2 ? 'met' : 'missed'})`);
    console.log(
      `bench:kernel empty=${over('empty').toFixed(0)} irqtrace=${over('irqtrace').toFixed(0)} irqsoff=${over('irqsoff').toFixed(0)} ` +
        `ratio_vs_irqsoff=${ratioIrqsoff.toFixed(2)} ratio_vs_empty=${ratioEmpty.toFixed(2)}`,
    );
  } finally {
    await vm.stop();
  }
}

main().catch((err: unknown) => {
  console.error('bench:kernel failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
