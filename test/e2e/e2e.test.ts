// End to end, all real: `kubectl apply` IrqTraces on a kube-apiserver; the
// built irqtrace-operator (controller + status in one process, the ingest in
// another) with nats-server; two QEMU guests as nodes, each running the agent:
// guest-exact on the project's tracing kernel with the kernel module (exact),
// guest-sampled on Debian's stock kernel with only the eBPF loader (sampled).
// The selftest provokes sections of known length; the status must name it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irqtrace } from '@irqtrace/proto';
import { repoRoot } from '../lib/paths.js';
import { waitUntil } from '../lib/wait.js';
import { must } from '../../kmod/test/harness.js';
import type { Report } from '../../kmod/test/harness.js';
import { ControlPlane, TIMER_CONTEXT, offender, sectionsOf, selftestInStatus, tallyStream, timerSectionsOf, waitForSelftestInStream } from './rig.js';
import type { AgentMetrics, GuestNode, Selftest } from './rig.js';

const SAMPLE_PERIOD_NS = 1_000_000;

let plane: ControlPlane;
let exact: GuestNode;
let sampled: GuestNode;

beforeAll(async () => {
  plane = await ControlPlane.start({ separateIngest: true });
  // One guest at a time: booting and building modules is what the 2 cores are for.
  exact = await plane.addNode({ name: 'guest-exact', flavour: 'tracing', backend: 'kmod', labels: { 'irqtrace.io/pool': 'exact' } });
  sampled = await plane.addNode({ name: 'guest-sampled', flavour: 'debian', backend: 'ebpf', labels: { 'irqtrace.io/pool': 'sampled' } });
  await Promise.all([exact.startAgent(), sampled.startAgent()]);
});

afterAll(async () => {
  await plane.stop();
});

/**
 * The selftest times its section from inside (duration_ns) and around it (outer_ns): an exact
 * method's measure lies between, give or take the probes' own cost; under TCG the two can be
 * milliseconds apart when the host preempts the guest.
 */
const outerNs = (r: Report): number => Number(r.fields.outer_ns ?? r.durationNs);

/** What a failed wait leaves for whoever reads the test's output. */
async function explain(traces: string[]): Promise<void> {
  for (const t of traces) console.log(`status of ${t}: ${JSON.stringify(await plane.status(t))}`);
  for (const node of [exact, sampled]) {
    console.log(`${node.name} agent metrics: ${JSON.stringify(await node.metrics().catch((e: unknown) => String(e)))}`);
    console.log(`${node.name} agent log (tail):\n${(await node.agentLog()).split('\n').slice(-15).join('\n')}`);
  }
  for (const p of ['ingest', 'operator']) console.log(`${p} log (tail):\n${plane.processLog(p).split('\n').slice(-15).join('\n')}`);
}

async function waitOrExplain(what: string, timeoutMs: number, check: () => Promise<boolean>, traces: string[], intervalMs?: number): Promise<void> {
  try {
    await waitUntil(what, timeoutMs, check, intervalMs);
  } catch (err) {
    await explain(traces);
    throw err;
  }
}

/**
 * For a selftest section measured wrong or not found: what the stream holds from that node around
 * it (and the agent's counters), so that a failure in CI says whether the kernel side missed it,
 * cut it short or gave it to another task.
 */
async function explainSelftestMiss(node: GuestNode, r: Report): Promise<void> {
  const tally = await tallyStream(plane.nats.url);
  const near = tally.sections.filter((x) => x.node === node.name && x.startNs > r.startNs - 100_000_000n && x.startNs < r.startNs + r.durationNs + 100_000_000n);
  console.log(`${node.name}: selftest ${JSON.stringify(r.fields)}; stream sections within 100 ms: ${JSON.stringify(near.map((x) => ({ ...x, startNs: String(x.startNs) })))}; agent ${JSON.stringify(await node.metrics())}`);
}

const apply = (file: string) => plane.kubectl(['apply', '-f', '-'], readFileSync(join(repoRoot, 'examples', file), 'utf8'));

/** Threshold raised out of reach: the traces stay (and their status) while no new event comes. */
async function quiesce(traces: string[], nodes: GuestNode[]): Promise<void> {
  for (const t of traces) await plane.kubectl(['patch', 'irqtrace', t, '--type=merge', '-p', '{"spec":{"threshold":"60s"}}']);
  for (const node of nodes) {
    let last = '';
    await waitOrExplain(`${node.name}: everything sent and acked`, 60_000, async () => {
      const m = await node.metrics();
      const now = JSON.stringify(m.batched);
      const settled = m.unacked === 0 && now === last;
      last = now;
      return settled;
    }, traces, 2000);
  }
}

/**
 * Status, stream and agents agree to the event: nothing counted twice, nothing lost silently. A
 * section the kernel ring or an agent queue had no room for is a loss, not an event: under TCG on a
 * loaded host the guests can make more than the agent keeps up with, so losses are allowed, but the
 * status of each trace must say exactly what its agents counted.
 */
async function expectExactCounts(traces: string[], nodes: GuestNode[], before: Map<string, AgentMetrics>): Promise<void> {
  const tally = await tallyStream(plane.nats.url);
  expect(tally.duplicates, 'a batch published twice').toBe(0);
  for (const t of traces) {
    const want = tally.events.get(t) ?? 0;
    await waitOrExplain(`${t}: the status counting what the stream holds (${want})`, 30_000, async () => (await plane.status(t))?.violations === want, traces);
    const s = must(await plane.status(t));
    console.log(`${t}: status violations=${s.violations ?? 0} stream events=${want} (${tally.messages} event messages in the stream, all traces), duplicates=${tally.duplicates}, lost=${s.lost ?? 0}`);
    for (const node of nodes) {
      const perNode = s.nodes?.find((n) => n.name === node.name)?.violations ?? 0;
      expect(perNode, `${t} on ${node.name}`).toBe(tally.byNode.get(`${t}/${node.name}`) ?? 0);
    }
  }
  for (const node of nodes) {
    const was = before.get(node.name);
    const lostByAgent = async () => (await node.metrics()).dropped - (was?.dropped ?? 0);
    // Kernel drop counters are read every 10 s: wait for the last reading to reach every status.
    for (const t of traces) {
      await waitOrExplain(`${t} on ${node.name}: the status's lost equal to the agent's`, 30_000, async () => {
        const lost = (await plane.status(t))?.nodes?.find((n) => n.name === node.name)?.lost ?? 0;
        return lost === (await lostByAgent());
      }, traces, 2000);
    }
    // Every event an agent batched reached the stream once: the first trace takes all of them.
    const m = await node.metrics();
    const batched = m.batchedTotal - (was?.batchedTotal ?? 0);
    console.log(`${node.name}: batched by the agent=${batched}, lost=${await lostByAgent()} ${JSON.stringify(m.droppedByStage)}`);
    expect(batched, `${node.name}: batched by the agent vs in the stream`).toBe(tally.byNode.get(`${must(traces[0])}/${node.name}`) ?? 0);
  }
}

async function metricsNow(nodes: GuestNode[]): Promise<Map<string, AgentMetrics>> {
  const now = new Map<string, AgentMetrics>();
  for (const node of nodes) now.set(node.name, await node.metrics());
  return now;
}

describe('kubectl apply an IrqTrace, see who kept interrupts off in its status', () => {
  it('names the selftest in both traces on both nodes, counts exactly, and unloads on delete', async () => {
    await apply('irqtrace-all.yaml');
    await apply('irqtrace-line.yaml');
    for (const node of [exact, sampled]) {
      await node.waitTracing();
    }
    expect((await exact.metrics()).backend).toBe('kmod/exact/running');
    expect((await sampled.metrics()).backend).toBe('ebpf/sampled/running');
    expect(await exact.moduleLoaded()).toBe(true);
    expect(await sampled.moduleLoaded()).toBe(false);

    // The selftest, with ordinary load around it, longer than what the guests do by themselves,
    // so that its sections are among the worst offenders.
    const reports = new Map<GuestNode, Selftest<Report>>();
    for (const node of [exact, sampled]) reports.set(node, await node.provoke());

    // Each selftest section is in the stream (found by time: the task makes others too), then
    // among its trace's worst offenders.
    const found = await waitForSelftestInStream(plane.nats.url, reports, 60_000).catch(async (err: unknown) => {
      for (const [node, r] of reports) {
        await explainSelftestMiss(node, r.irqsOff);
        await explainSelftestMiss(node, r.line);
      }
      throw err;
    });
    await waitOrExplain('every selftest section among the worst offenders', 60_000, () => selftestInStatus(plane, found), ['all-irqs', 'serial-line']);
    const all = must(await plane.status('all-irqs'));
    const line = must(await plane.status('serial-line'));
    for (const [node, r] of reports) {
      const f = must(found.get(node));
      const off = must(offender(all, f.irqsOff, 'irqs_off'));
      expect(off).toMatchObject({ comm: 'irqburn', cpu: r.irqsOff.cpu });
      expect(off.topFrames?.join(' ')).toMatch(/irqburn_irqs_off/);
      const truth = Number(r.irqsOff.durationNs);
      console.log(`${node.name}: irqs-off truth=${truth} status=${off.durationNs} (${node.backend}); line truth=${r.line.durationNs} status=${f.line.durationNs}`);
      if (node === exact) {
        expect(off.durationNs).toBeGreaterThanOrEqual(truth - 10_000);
        expect(off.durationNs).toBeLessThanOrEqual(outerNs(r.irqsOff) + 10_000);
      } else {
        // Sampled: short of the truth by less than a period; over it by how late the timer interrupt
        // comes once interrupts are back on, which under TCG with two guests on 2 cores has been up to
        // 4.8 ms (the demo, with the controller manager too), so 10 periods.
        expect(truth - off.durationNs).toBeLessThan(SAMPLE_PERIOD_NS);
        expect(truth - off.durationNs).toBeGreaterThan(-10 * SAMPLE_PERIOD_NS);
      }
      const masked = must(offender(line, f.line, 'irq_line'));
      expect(masked).toMatchObject({ comm: 'irqburn', irq: node.serialLine, cpu: r.line.cpu });
      expect(masked.topFrames?.[0]).toMatch(/^irqburn_mask_line/);
      if (masked.durationNs < Number(r.line.fields.inner_ns ?? r.line.durationNs) - 10_000) await explainSelftestMiss(node, r.line);
      expect(masked.durationNs).toBeGreaterThanOrEqual(Number(r.line.fields.inner_ns ?? r.line.durationNs) - 10_000);
      expect(masked.durationNs).toBeLessThanOrEqual(outerNs(r.line) + 10_000);
      // IRQ lines are hooked exactly by both backends; the all-interrupts trace shows the irqs-off method.
      expect(line.nodes?.find((n) => n.name === node.name)).toMatchObject({ backend: node.backend, method: 'exact', phase: 'Running' });
      expect(all.nodes?.find((n) => n.name === node.name)).toMatchObject({ backend: node.backend, method: node === exact ? 'exact' : 'sampled' });
    }
    // Every section the kernel side measured, under the threshold too, in the agents' Prometheus
    // histogram: the selftest's in the log2 bucket of its length, and at least every violation.
    for (const [node, r] of reports) {
      const truth = Number(r.irqsOff.durationNs) / 1e9;
      let kernel: [number, number][] = [];
      await waitUntil(`${node.name}: the selftest's section in irqtrace_kernel_section_duration_seconds`, 60_000, async () => {
        kernel = (await node.metrics()).kernelIrqsOff;
        const upTo = (s: number) => kernel.filter(([le]) => le < s).at(-1)?.[1] ?? 0;
        const bound = kernel.find(([le]) => le >= truth)?.[0] ?? Infinity;
        return (kernel.find(([le]) => le === bound)?.[1] ?? 0) - upTo(bound) >= 1;
      });
      const { batched } = await node.metrics();
      console.log(`${node.name}: kernel histogram irqs-off sections=${kernel.at(-1)?.[1]} (violations batched ${batched['irqs-off']})`);
      expect(kernel.at(-1)?.[0]).toBe(Infinity);
      expect(kernel.at(-1)?.[1]).toBeGreaterThanOrEqual(batched['irqs-off'] ?? 0);
    }
    // On the exact node the selftest's is the longest section; a sampled node can show a second
    // one as long at the same time (QEMU delays the other vCPU's timer too), so not there.
    expect(all.nodes?.find((n) => n.name === exact.name)?.maxDurationNs).toBe(must(found.get(exact)).irqsOff.durationNs);
    for (const s of [all, line]) {
      expect(s.nodesSummary).toBe('2/2');
      expect(s.conditions?.find((c) => c.type === 'Violating')).toMatchObject({ status: 'True', reason: 'ThresholdExceeded' });
      expect(s.conditions?.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'False' });
    }
    // A 60 ms timer callback on each node's idle CPU 1: the callback's section, named so in the
    // stream and the status (the landed agents dropped it as the idle task's).
    const timers = new Map<GuestNode, Report>();
    for (const node of [exact, sampled]) timers.set(node, await node.provokeTimer());
    try {
      await waitOrExplain('the timer callbacks among the worst offenders', 60_000, async () => {
        const s = await plane.status('all-irqs');
        return [exact, sampled].every((node) => s?.worstOffenders?.some((v) => v.node === node.name && v.context === TIMER_CONTEXT));
      }, ['all-irqs']);
    } catch (err) {
      for (const [node, r] of timers) await explainSelftestMiss(node, r);
      throw err;
    }
    const tally = await tallyStream(plane.nats.url);
    const withTimers = must(await plane.status('all-irqs'));
    for (const [node, r] of timers) {
      const [section] = timerSectionsOf(tally, 'all-irqs', node, r);
      expect(section, `${node.name}: the timer callback's section in the stream`).toBeDefined();
      expect(must(section).durationNs).toBeGreaterThanOrEqual(Number(r.durationNs) - (node === exact ? 0 : SAMPLE_PERIOD_NS));
      const v = must(withTimers.worstOffenders?.find((o) => o.node === node.name && o.context === TIMER_CONTEXT));
      expect(v).toMatchObject({ kind: 'irqs_off', cpu: r.cpu });
      expect(v).not.toHaveProperty('pod');
    }
    const table = await plane.kubectl(['get', 'irqtraces']);
    expect(table).toMatch(/\nall-irqs\s+all\s+1ms\s+2\/2\s+\d+\s+\d+\.\d+ms \S+\/\d+ on guest-\w+\s+True\s+\S+\n/);
    expect(table).toMatch(/\nserial-line\s+irq ttyS0\s+1ms\s+2\/2\s+\d+\s+\d+\.\d+ms irqburn\/\d+ on guest-\w+\s+True\s+\S+\n/);

    await quiesce(['all-irqs', 'serial-line'], [exact, sampled]);
    await expectExactCounts(['all-irqs', 'serial-line'], [exact, sampled], new Map());

    // Deleting the traces: the agents drop them and unload the kernel side, still running. kubectl
    // returns once the traces are gone, and their finalizer goes only once every node's agent
    // reported a config without them applied: by then the kernel side is unloaded, no waiting.
    await plane.kubectl(['delete', 'irqtrace', 'all-irqs', 'serial-line']);
    expect(await exact.moduleLoaded()).toBe(false);
    expect(await sampled.loaderRunning()).toBe(false);
    const released = await plane.kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', 'regarding.name=all-irqs', '-o', 'jsonpath={.items[*].reason}']);
    expect(released.split(' ')).toContain('Unloaded');
    expect((await plane.cluster.kubectl(['get', 'daemonset', '-n', 'irqtrace-system', 'irqtrace-agent'])).code).not.toBe(0);
    for (const node of [exact, sampled]) expect(await node.agentRunning()).toBe(true);
  });

  it('ends with exact counts when the ingest and the operator are killed and restarted mid-run', async () => {
    // On its own feet even if the first case failed half-way.
    await plane.kubectl(['delete', 'irqtraces', '--all']);
    await waitUntil('the kernel side unloaded', 120_000, async () => !(await exact.moduleLoaded()) && !(await sampled.loaderRunning()));
    const before = await metricsNow([exact]);
    await plane.kubectl(['apply', '-f', '-'], 'apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: restarts\nspec:\n  nodeSelector: {matchLabels: {irqtrace.io/pool: exact}}\n  target: {all: true}\n  threshold: 1ms\n');
    await waitUntil('guest-exact tracing', 240_000, async () => (await exact.metrics()).backend === 'kmod/exact/running' && (await exact.moduleLoaded()), 1000);

    const burst = (n: number) => exact.rig.irqburn(...Array.from({ length: n }, (_, i) => `irqoff ${2000 + 100 * i} ${i % 2}`));
    const reports: Report[] = [];
    reports.push(...(await burst(10)));
    await plane.restart('ingest');
    reports.push(...(await burst(10)));
    await plane.restart('operator');
    reports.push(...(await burst(10)));
    // Both at once, with sections made while neither runs.
    const down = Promise.all([plane.restart('ingest'), plane.restart('operator')]);
    reports.push(...(await burst(10)));
    await down;
    reports.push(...(await burst(10)));

    await quiesce(['restarts'], [exact]);
    await expectExactCounts(['restarts'], [exact], before);
    // Every selftest section is in the stream, once, at its length.
    const tally = await tallyStream(plane.nats.url);
    for (const r of reports) {
      const found = sectionsOf(tally, 'restarts', exact, irqtrace.v1.SectionKind.SECTION_KIND_IRQS_OFF, r);
      if (found.length !== 1) await explainSelftestMiss(exact, r);
      expect(found, `one section for ${JSON.stringify(r.fields)}`).toHaveLength(1);
      expect(must(found[0]).durationNs).toBeGreaterThanOrEqual(Number(r.durationNs) - 10_000);
      expect(must(found[0]).durationNs).toBeLessThanOrEqual(outerNs(r) + 10_000);
    }
    const s = must(await plane.status('restarts'));
    expect(s.violations).toBeGreaterThanOrEqual(reports.length);
    expect(s.nodesSummary).toBe('1/1');
    await plane.kubectl(['delete', 'irqtrace', 'restarts']);
    await waitUntil('the module unloaded in guest-exact', 120_000, async () => !(await exact.moduleLoaded()));
  });

  // Issue 29, item 2: the agent swallowed a failed rmmod and said the config was applied, so the
  // finalizer went with the module still loaded.
  it('holds a deleted trace while its module is in use, naming the node and rmmod\'s error; released once it is free', async () => {
    await plane.kubectl(['delete', 'irqtraces', '--all']);
    await waitUntil('the kernel side unloaded', 120_000, async () => !(await exact.moduleLoaded()) && !(await sampled.loaderRunning()));
    await plane.kubectl(['apply', '-f', '-'], 'apiVersion: irqtrace.io/v1alpha1\nkind: IrqTrace\nmetadata:\n  name: busy\nspec:\n  nodeSelector: {matchLabels: {irqtrace.io/pool: exact}}\n  target: {all: true}\n  threshold: 1ms\n');
    await waitUntil('guest-exact tracing', 240_000, async () => (await exact.metrics()).backend === 'kmod/exact/running' && (await exact.moduleLoaded()), 1000);
    // A reader of the stats device holds the module: rmmod refuses it.
    await exact.vm.run('sleep 900 < /dev/irqtrace_stats > /dev/null 2>&1 & echo $! > /tmp/holder.pid');
    expect((await exact.vm.exec('kill -0 $(cat /tmp/holder.pid)')).code, 'the holder of /dev/irqtrace_stats runs').toBe(0);
    try {
      await plane.kubectl(['delete', 'irqtrace', 'busy', '--wait=false']);
      const ready = async () => (await plane.cluster.kubectl(['get', 'irqtrace', 'busy', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].message}'])).stdout;
      await waitUntil('the failed unload said', 90_000, async () => /in use/.test(await ready()), 1000);
      expect(await ready()).toMatch(/^waiting for 1 node to apply a config without the trace: guest-exact \(unloading: rmmod irqtrace: .*in use\)$/);
      expect(await exact.moduleLoaded()).toBe(true);
      // Refused, the module measures nothing meanwhile.
      expect((await exact.vm.run('cat /sys/module/irqtrace/parameters/method')).trim()).toBe('off');
    } finally {
      await exact.vm.run('kill $(cat /tmp/holder.pid)');
    }
    // The agent tries again (every 10 s): unloaded, then released.
    await waitUntil('released', 60_000, async () => (await plane.cluster.kubectl(['get', 'irqtrace', 'busy'])).code !== 0, 1000);
    expect(await exact.moduleLoaded()).toBe(false);
    const events = await plane.kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', 'regarding.name=busy', '-o', 'jsonpath={.items[*].reason}']);
    expect(events.split(' ')).toContain('Unloaded');
    expect(events.split(' ')).not.toContain('UnloadNotConfirmed');
  });
});
