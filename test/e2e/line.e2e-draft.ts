// DRAFT for issue 8 (not run by npm test: the file name does not end in .test.ts).
// Works 3 runs in 6: with a 2.5 ms masking the status gets it but the guest's own
// maskings of ttyS0 can be longer; with 30 ms the selftest's section never arrives
// (only ~1 ms ones from irqburn_enable_line in a kworker) — find out why first
// (a limit in the module's irq-line path? the record's task?), then make it a test.
// A lead: the ~1 ms sections named kworker/irqburn_enable_line look like the module
// missed irqburn's first disable_irq (its per-line depth reset to 0, as after a
// run-time reconfiguration), so the kworker's warm-up disable_irq_nosync started a
// section. Check whether the agent reapplies its config (or restarts tracing)
// while the line is masked.
//
// End to end, first case: `kubectl apply` an IrqTrace on one IRQ line, and
// see the masking a guest node did in the trace's status. All real: the
// kube-apiserver, nats-server, the built `irqtrace-operator` (every role), and
// a QEMU guest (Debian's kernel) as the node — a Node object, the agent inside
// it with the kernel module, the selftest masking its serial line for a known
// time. Deleting the trace unloads the module in the guest.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irqTraceCrdYaml } from '@irqtrace/operator';
import { agentCli, repoRoot, scratchDir } from '../lib/paths.js';
import { freePort } from '../lib/ports.js';
import { Service } from '../lib/process.js';
import { waitUntil } from '../lib/wait.js';
import { startCluster } from '../cluster/cluster.js';
import type { Cluster } from '../cluster/cluster.js';
import { startNats } from '../nats/nats.js';
import type { Nats } from '../nats/nats.js';
import { Vm } from '../vm/vm.js';
import { Rig, must } from '../../kmod/test/harness.js';

const OPERATOR = join(repoRoot, 'operator', 'dist', 'main.js');
const RUN = '/run/tmp/irqtrace-e2e';
const NODE = 'guest-1';

let cluster: Cluster;
let nats: Nats;
let operator: Service;
let vm: Vm;
let rig: Rig;
let line = 0;
let guestPort = 0;

interface Status {
  violations?: number;
  maxDurationNs?: number;
  nodesSummary?: string;
  worstOffenders?: { comm?: string; pid?: number; node?: string; durationNs: number; irq?: number; kind: string; topFrames?: string[] }[];
  conditions?: { type: string; status: string; reason: string }[];
}

async function status(name: string): Promise<Status> {
  const r = await cluster.kubectl(['get', 'irqtrace', name, '-o', 'jsonpath={.status}']);
  return r.code === 0 && r.stdout ? (JSON.parse(r.stdout) as Status) : {};
}

const moduleLoaded = async () => (await vm.exec('test -d /sys/module/irqtrace')).code === 0;

beforeAll(async () => {
  if (!existsSync(agentCli) || !existsSync(OPERATOR)) throw new Error('run npm run build first');
  [cluster, nats] = await Promise.all([startCluster({ controllerManager: false }), startNats()]);
  await cluster.kubectl(['create', '-f', '-'], irqTraceCrdYaml());
  await waitUntil('irqtraces served', 30_000, async () => (await cluster.kubectl(['get', 'irqtraces'])).code === 0);
  await cluster.kubectl(['create', 'namespace', 'irqtrace-system']);
  await cluster.kubectl(['apply', '-f', '-'], `apiVersion: v1\nkind: Node\nmetadata:\n  name: ${NODE}\n  labels: {irqtrace.io/e2e: "true"}\n`);

  const work = scratchDir('e2e');
  const ingestPort = await freePort();
  const config = join(work, 'operator.yaml');
  writeFileSync(config, `leaderElection: {enabled: false}\nnats: {servers: ["${nats.url}"], maxAgeHours: 1, maxBytes: 67108864}\ningest: {listen: "127.0.0.1:${ingestPort}"}\nmetrics: {listen: "127.0.0.1:${await freePort()}"}\nstatusIntervalMs: 500\n`);
  operator = new Service('irqtrace-operator', process.execPath, [OPERATOR, 'run', '--config', config, '--kubeconfig', cluster.kubeconfigPath], join(work, 'operator.log'), { env: { ...process.env, LOG_LEVEL: 'info' } });
  await operator.waitForOutput(/ingest listening/, 60_000);

  vm = await Vm.boot({ flavour: 'debian' });
  rig = await Rig.create(vm);
  line = Number(/^\s*(\d+):.*\bttyS0\b/m.exec(await vm.run('cat /proc/interrupts'))?.[1]);
  guestPort = await vm.forwardToHost(ingestPort);
});

afterAll(async () => {
  await vm.stop();
  await operator.stop();
  await Promise.all([cluster.stop(), nats.stop()]);
});

describe('an IrqTrace on an IRQ line, end to end', () => {
  it('shows the masking a node did in the status, and unloads the module when deleted', async () => {
    await cluster.kubectl(['apply', '-f', '-'], `apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: serial-line\nspec:\n  nodeSelector: {matchLabels: {irqtrace.io/e2e: "true"}}\n  target: {irqs: [${line}]}\n  threshold: 1ms\n  backend: kmod\n`);
    await vm.execHost(
      `rm -rf ${RUN}; mkdir -p ${RUN}; (node ${agentCli} agent --ingest 127.0.0.1:${guestPort} --node ${NODE} --module ${rig.modules.irqtrace} --spool ${RUN}/spool > ${RUN}/log 2>&1 & echo $! > ${RUN}/pid; wait $!) > /dev/null 2>&1 &`,
    );
    await waitUntil('the module loaded by the agent', 300_000, moduleLoaded);
    await waitUntil('the node reporting', 120_000, async () => (await status('serial-line')).nodesSummary === '1/1');
    // Loaded is not yet tracing the line: wait for the module to have it.
    await waitUntil('the line traced', 120_000, async () => (await vm.exec('cat /sys/module/irqtrace/parameters/irqs')).stdout.trim().split(',').includes(String(line)));

    const [masked] = await rig.irqburn(`irqline ${line} 2500 1`);
    const report = must(masked);
    await waitUntil('the selftest in the status', 60_000, async () => (await status('serial-line')).worstOffenders?.some((v) => v.pid === report.pid) ?? false).catch(async (err: unknown) => {
      console.log(JSON.stringify({ report: { pid: report.pid, ns: String(report.durationNs) }, worst: (await status('serial-line')).worstOffenders }));
      console.log((await vm.execHost(`tail -5 ${RUN}/log`)).stdout);
      throw err;
    });
    const s = await status('serial-line');
    const worst = must(s.worstOffenders?.find((v) => v.pid === report.pid));
    expect(worst).toMatchObject({ kind: 'irq_line', irq: line, comm: 'irqburn', pid: report.pid, node: NODE });
    expect(Math.abs(worst.durationNs - Number(report.durationNs))).toBeLessThanOrEqual(10_000);
    expect(worst.topFrames?.[0]).toMatch(/^irqburn_mask_line/);
    expect(s.conditions?.find((c) => c.type === 'Violating')).toMatchObject({ status: 'True', reason: 'ThresholdExceeded' });
    expect(s.worstOffenders?.[0]?.pid).toBe(report.pid);
    const table = await cluster.kubectl(['get', 'irqtraces']);
    expect(table.stdout).toMatch(new RegExp(`\\nserial-line\\s+irq ${line}\\s+1ms\\s+1/1\\s+[1-9]`));

    // The trace goes: the agent is told, and unloads the module.
    await cluster.kubectl(['delete', 'irqtrace', 'serial-line']);
    await waitUntil('the module unloaded in the guest', 120_000, async () => !(await moduleLoaded()));
    await vm.execHost(`kill -TERM $(cat ${RUN}/pid)`);
  });
});
