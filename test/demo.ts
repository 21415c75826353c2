// `npm run demo`: irqtrace end to end on this machine, as a person would use it.
// A real control plane and NATS, the operator (every role, as the chart runs
// it), two QEMU guests as Kubernetes nodes with the agent inside — one on the
// project's tracing kernel with the kernel module (exact), one on Debian's
// stock kernel with only the eBPF loader (sampled) — then: kubectl apply two
// IrqTraces, make the guests keep interrupts off and mask an IRQ line, watch
// `kubectl get irqtraces` and the status, delete the traces and see the kernel
// side unloaded. It leaves nothing running.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Violation } from '@irqtrace/operator';
import { repoRoot } from './lib/paths.js';
import { waitUntil } from './lib/wait.js';
import { must } from '../kmod/test/harness.js';
import type { Report } from '../kmod/test/harness.js';
import { ControlPlane, selftestInStatus, selftestInStream } from './e2e/rig.js';
import type { GuestNode, Selftest } from './e2e/rig.js';

const started = Date.now();
const say = (line: string) => {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${line}`);
};
const show = (text: string) => {
  console.log(text.replace(/\n+$/, '').replace(/^/gm, '    '));
};
const ms = (ns: number) => `${(ns / 1e6).toFixed(3)} ms`;

function offenderLine(v: Violation): string {
  const where = v.kind === 'irq_line' ? `irq ${v.irq ?? '?'} masked` : `${v.kind.replace('_', ' ')} on cpu ${v.cpu ?? '?'}`;
  // A section of interrupt code is the handler's: named instead of the task it interrupted.
  return `${ms(v.durationNs).padStart(10)}  ${where.padEnd(22)} ${(v.context ?? `${v.comm ?? '?'}/${v.pid ?? '?'}`).padEnd(16)} ${v.node ?? ''}\n${''.padEnd(12)}${(v.topFrames ?? []).slice(0, 3).join(' < ')}`;
}

async function watchTable(plane: ControlPlane, until: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  let last = '';
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const table = await plane.kubectl(['get', 'irqtraces']);
    // AGE changes every second: print the table when anything else does.
    const key = table.replace(/\s+\S+$/gm, '');
    if (key !== last) {
      say('$ kubectl get irqtraces');
      show(table);
      last = key;
    }
    if (await until()) return;
    if (Date.now() > deadline) throw new Error('the status did not show the selftest in time');
    await new Promise((r) => setTimeout(r, 3000));
  }
}

async function main(): Promise<void> {
  const plane = await ControlPlane.start({ controllerManager: true, say });
  const cleanup = async () => {
    say('stopping the guests, the operator, NATS and the control plane');
    await plane.stop();
  };
  process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
  try {
    const exact = await plane.addNode({ name: 'guest-exact', flavour: 'tracing', backend: 'kmod' });
    const sampled = await plane.addNode({ name: 'guest-sampled', flavour: 'debian', backend: 'ebpf' });
    say('starting the agent in each guest (what the DaemonSet pod runs), reaching the ingest over an ssh forward');
    await Promise.all([exact.startAgent(), sampled.startAgent()]);
    say('$ kubectl get nodes');
    show(await plane.kubectl(['get', 'nodes', '-L', 'kubernetes.io/os']));

    for (const file of ['irqtrace-all.yaml', 'irqtrace-line.yaml']) {
      say(`$ kubectl apply -f examples/${file}`);
      show(await plane.kubectl(['apply', '-f', '-'], readFileSync(join(repoRoot, 'examples', file), 'utf8')));
    }
    await waitUntil('the agents DaemonSet', 30_000, async () => (await plane.cluster.kubectl(['get', 'daemonset', '-n', 'irqtrace-system', 'irqtrace-agent'])).code === 0);
    say('the operator made the agents\' DaemonSet (no kubelet here: the guests run the agent instead)');
    show(await plane.kubectl(['get', 'daemonset', '-n', 'irqtrace-system', '-o', 'wide']));

    for (const node of [exact, sampled]) {
      await node.waitTracing();
      const [backend, method] = (await node.metrics()).backend.split('/');
      say(`${node.name}: the agent traces with ${backend === 'kmod' ? 'the kernel module' : 'eBPF'}, ${method} (${(await node.vm.run('uname -r')).trim()})`);
    }

    say('workload in each guest: ordinary load, and the selftest: 80 ms with interrupts off, the serial line (ttyS0) masked for 30 ms, a 60 ms timer callback');
    const reports = new Map<GuestNode, Selftest<Report>>();
    for (const node of [exact, sampled]) {
      const done = await node.provoke();
      reports.set(node, done);
      for (const r of [done.irqsOff, done.line]) {
        say(`  ${node.name}: selftest ${r.op === 'irqoff' ? 'irqs off' : `irq ${node.serialLine} masked`} ${ms(Number(r.durationNs))} by ${r.comm}/${r.pid} on cpu ${r.cpu}`);
      }
      const timer = await node.provokeTimer();
      say(`  ${node.name}: selftest ${ms(Number(timer.durationNs))} in an hrtimer callback (${timer.fields.fn ?? '?'}) on idle cpu ${timer.cpu}: the callback's section, not the idle loop's`);
    }

    // Watched until the status names those very sections (the selftest's task makes others, such
    // as the masking's warm-up just before it, which would otherwise be shown as the masking).
    let found: Awaited<ReturnType<typeof selftestInStream>>;
    await watchTable(plane, async () => {
      found ??= await selftestInStream(plane.nats.url, reports);
      return found !== undefined && (await selftestInStatus(plane, found));
    }, 120_000);

    for (const trace of ['all-irqs', 'serial-line']) {
      const s = must(await plane.status(trace));
      say(`${trace}: worst offenders (from its status)`);
      for (const v of s.worstOffenders ?? []) show(offenderLine(v));
      say(`${trace}: per node`);
      for (const n of s.nodes ?? []) {
        show(`${n.name.padEnd(14)} ${`${n.backend ?? '?'}/${n.method ?? '?'}`.padEnd(14)} ${n.phase ?? ''}  ${n.violations} violations, max ${ms(n.maxDurationNs)}, lost ${n.lost ?? 0}`);
      }
    }
    say('$ kubectl get irqtrace serial-line -o yaml   (its status)');
    const yaml = await plane.kubectl(['get', 'irqtrace', 'serial-line', '-o', 'yaml']);
    show(yaml.slice(yaml.indexOf('\nstatus:') + 1));

    say('$ kubectl delete irqtrace all-irqs serial-line');
    show(await plane.kubectl(['delete', 'irqtrace', 'all-irqs', 'serial-line']));
    await waitUntil('the module unloaded in guest-exact', 120_000, async () => !(await exact.moduleLoaded()));
    say('guest-exact: the agent was told, and unloaded irqtrace.ko (no /sys/module/irqtrace)');
    await waitUntil('the eBPF loader gone in guest-sampled', 120_000, async () => !(await sampled.loaderRunning()));
    say('guest-sampled: the agent was told, and detached its eBPF programs (no irqtrace-bpf running)');
    await waitUntil('the DaemonSet gone', 30_000, async () => (await plane.cluster.kubectl(['get', 'daemonset', '-n', 'irqtrace-system', 'irqtrace-agent'])).code !== 0);
    say('$ kubectl get daemonset -n irqtrace-system');
    show((await plane.cluster.kubectl(['get', 'daemonset', '-n', 'irqtrace-system'])).stderr || 'No resources found');
    say('the DaemonSet is gone, so its pods would be too: stopping the agents');
    await Promise.all([exact.stopAgent(), sampled.stopAgent()]);
  } finally {
    await cleanup();
  }
  say('done: nothing left running.');
}

main().catch((err: unknown) => {
  console.error('demo failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
