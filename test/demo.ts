// `npm run demo`: the main job, end to end. Until the end-to-end issue lands
// (kubectl apply an IrqTrace, see its violations in status), it brings up
// every real part the demo will use, shows each one working, and says what
// is not ready yet. It leaves nothing running.
import { startCluster } from './cluster/cluster.js';
import { startNats } from './nats/nats.js';
import { Vm } from './vm/vm.js';

const started = Date.now();
const say = (line: string) => {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${line}`);
};

async function step<T>(title: string, body: () => Promise<T>): Promise<T> {
  say(`${title} ...`);
  const result = await body();
  return result;
}

async function main(): Promise<void> {
  const cluster = await step('starting etcd + kube-apiserver + kube-controller-manager on 127.0.0.1', () => startCluster());
  try {
    say(`control plane up at ${cluster.server}`);
    console.log((await cluster.kubectl(['get', 'namespaces'])).stdout);
    const nats = await step('starting nats-server with JetStream on 127.0.0.1', () => startNats());
    try {
      say(`NATS up at ${nats.url}`);
      for (const flavour of ['tracing', 'debian'] as const) {
        const vm = await step(`booting the ${flavour} kernel guest under QEMU (TCG)`, () => Vm.boot({ flavour }));
        try {
          say(`guest up: ${(await vm.run('uname -r')).trim()}`);
          const exact = await vm.exec('test -d /sys/kernel/tracing/events/preemptirq/irq_disable');
          const kprobes = await vm.exec('test -f /sys/kernel/tracing/kprobe_events');
          console.log(`    exact method (preemptirq tracepoints): ${exact.code === 0 ? 'available' : 'not in this kernel: sampled method'}`);
          console.log(`    irq-line method (kprobes):             ${kprobes.code === 0 ? 'available' : 'missing'}`);
        } finally {
          await vm.stop();
        }
      }
    } finally {
      await nats.stop();
    }
  } finally {
    await cluster.stop();
  }
  say('every part of the demo is ready; stopped them all.');
  console.log(
    '\nNot ready yet: the kernel module, the agent, the operator and the IrqTrace resource.\n' +
      'When they land, this command applies examples/irqtrace-all.yaml and shows the violations in `kubectl get irqtraces`.',
  );
}

main().catch((err: unknown) => {
  console.error('demo failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
