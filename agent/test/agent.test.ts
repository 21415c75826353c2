// `irqtrace agent` inside a guest: traces come from an ingest on the host
// (a real grpc-js server, reached through ssh -R), events go back to it in
// batches, config changes apply at run time, and nothing stays loaded when
// no trace applies or the agent stops. Also the standalone mode: config
// file, local store, `irqtrace list`.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irqtrace, toBigInt, toLong } from '@irqtrace/proto';
import { FakeIngest } from '../../test/lib/fake_ingest.js';
import { agentCli } from '../../test/lib/paths.js';
import { waitUntil } from '../../test/lib/wait.js';
import { Vm } from '../../test/vm/vm.js';
import { Rig, must, startsMasking } from '../../kmod/test/harness.js';
import type { Report } from '../../kmod/test/harness.js';

const pb = irqtrace.v1;
const CLI = agentCli;
const RUN = '/run/tmp/irqtrace-agent';

let vm: Vm;
let rig: Rig;
let ingest: FakeIngest;
let guestPort = 0;
let line = 0;

function lineTrace(thresholdNs: bigint): irqtrace.v1.ITraceConfig {
  return { name: 'lab', target: { irqs: [line] }, thresholdNs: toLong(thresholdNs), backend: pb.BackendChoice.BACKEND_CHOICE_KMOD, stacks: true };
}

async function startAgent(args: string): Promise<void> {
  await vm.execHost(
    `rm -rf ${RUN}; mkdir -p ${RUN}; (node ${CLI} agent ${args} > ${RUN}/log 2>&1 & echo $! > ${RUN}/pid; wait $!; echo $? > ${RUN}/rc) > /dev/null 2>&1 &`,
  );
}

async function stopAgent(): Promise<{ code: number; log: string }> {
  await vm.execHost(`kill -TERM $(cat ${RUN}/pid)`);
  let rc = '';
  await waitUntil('the agent to exit', 120_000, async () => (rc = (await vm.execHost(`cat ${RUN}/rc 2>/dev/null`)).stdout.trim()) !== '');
  return { code: Number(rc), log: (await vm.execHost(`cat ${RUN}/log`)).stdout };
}

function eventsOf(report: Report): irqtrace.v1.IEvent[] {
  return ingest.events().filter(
    (e) => e.kind === pb.SectionKind.SECTION_KIND_IRQ_LINE && e.irq === line && e.task?.pid === report.pid && startsMasking(report, toBigInt(e.startNs)),
  );
}

const moduleLoaded = async () => (await vm.exec('test -d /sys/module/irqtrace')).code === 0;

/**
 * Stops an agent a failed test left running, and its module: the next describe must not wait
 * behind it (run 3 of 5 on 2026-12-06: the standalone test waited 300 s for a module held by
 * the agent of the test that had failed before it).
 */
async function stopLeftoverAgent(): Promise<void> {
  await vm.execHost(`test -f ${RUN}/pid && ! test -f ${RUN}/rc && kill -TERM $(cat ${RUN}/pid); for i in $(seq 100); do test -f ${RUN}/rc -o ! -f ${RUN}/pid && break; sleep 0.5; done; true`);
  await vm.exec('rmmod irqtrace 2>/dev/null; true');
}

/** waitUntil, failing with the agent's log and the states the ingest got (a failure in CI says why). */
async function waitOrExplain(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  try {
    await waitUntil(what, timeoutMs, check);
  } catch (err) {
    const states = ingest.states.map((st) => `${String(st.phase)}@v${toBigInt(st.configVersion).toString()}${st.reason ? ` (${st.reason})` : ''}`).join(', ');
    throw new Error(`${String(err)}\nstates: ${states}\nagent log:\n${(await vm.execHost(`cat ${RUN}/log`)).stdout}`);
  }
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  vm = await Vm.boot({ flavour: 'debian' });
  rig = await Rig.create(vm);
  line = Number(/^\s*(\d+):.*\bttyS0\b/m.exec(await vm.run('cat /proc/interrupts'))?.[1]);
  await rig.irqburn(`irqline ${line} 1000 2`);
  ingest = new FakeIngest();
  ingest.config = { version: toLong(1n), traces: [lineTrace(1_000_000n)] };
  await ingest.start();
  guestPort = await vm.forwardToHost(ingest.port);
});

afterAll(async () => {
  ingest.kill();
  await vm.stop();
});


describe('irqtrace agent with an ingest', () => {
  afterAll(stopLeftoverAgent);

  it('runs the trace it is given and sends its events, attributed and symbolized', async () => {
    await startAgent(`--ingest 127.0.0.1:${guestPort} --node guest-1 --module ${rig.modules.irqtrace} --spool ${RUN}/spool --metrics-port 9101`);
    await waitUntil('the agent to run its backend', 300_000, async () => Promise.resolve(ingest.states.some((s) => s.phase === pb.BackendState.Phase.PHASE_RUNNING)));
    expect(ingest.hellos[0]).toMatchObject({ node: 'guest-1', protocolVersion: 1 });
    expect(ingest.hellos[0]?.capabilities).toMatchObject({ kprobes: true, bpf: true, irqTracepoints: false });
    expect(await moduleLoaded()).toBe(true);
    // The steal clock it found in kallsyms (Debian's kernel is a KVM guest's too), for marking host stalls.
    const steal = /^[0-9a-f]+ \w steal_time$/m.exec(await vm.run("grep ' steal_time$' /proc/kallsyms"))?.[0].split(' ')[0] ?? '0';
    expect((await vm.run('cat /sys/module/irqtrace/parameters/steal_time_offset')).trim()).toBe(BigInt(`0x${steal}`).toString());

    const [masked] = await rig.irqburn(`irqline ${line} 2000 2`);
    const report = must(masked);
    await waitUntil('the event at the ingest', 60_000, async () => Promise.resolve(eventsOf(report).length > 0));
    const found = eventsOf(report);
    expect(found).toHaveLength(1);
    const e = must(found[0]);
    expect(e).toMatchObject({ backend: pb.Backend.BACKEND_KMOD, traces: ['lab'], task: { comm: 'irqburn' }, enablingTask: { comm: report.fields.enable_comm } });
    expect(e.disableSite?.ip?.symbol).toMatch(/^irqburn_mask_line/);
    expect(e.stack?.[0]?.symbol).toMatch(/^irqburn_mask_line/);
    expect(e.task?.cgroupPath).toMatch(/^\//);
    // Between the selftest's inner and outer clocks (kmod/test checks the offset on many maskings).
    expect(toBigInt(e.durationNs)).toBeGreaterThanOrEqual(BigInt(report.fields.inner_ns ?? '0') - 1_000n);
    expect(toBigInt(e.durationNs)).toBeLessThanOrEqual(BigInt(report.fields.outer_ns ?? '0') + 1_000n);

    // It waits for records in a blocking read of /dev/irqtrace (the module wakes it): its descriptor
    // is not O_NONBLOCK (the landed agent's was, and it read again every 20 ms).
    const pid = (await vm.execHost(`cat ${RUN}/pid`)).stdout.trim();
    const fd = (await vm.run(`for f in /proc/${pid}/fd/*; do case "$(readlink $f)" in */dev/irqtrace) basename $f;; esac; done; true`)).trim();
    expect(fd, 'the agent has /dev/irqtrace open').toMatch(/^\d+$/);
    const flags = Number.parseInt(/^flags:\s+(\d+)/m.exec(await vm.run(`cat /proc/${pid}/fdinfo/${fd}`))?.[1] ?? '', 8);
    expect(flags & 0o4000, 'O_NONBLOCK').toBe(0);

    const ready = await vm.execHost('curl -s -o /dev/null -w "%{http_code}" 127.0.0.1:9101/readyz');
    expect(ready.stdout).toBe('200');
    const metrics = (await vm.execHost('curl -s 127.0.0.1:9101/metrics')).stdout;
    expect(metrics).toMatch(/irqtrace_backend_info\{backend="kmod",method="off",phase="running"\} 1/);
    expect(metrics).toMatch(/irqtrace_sections_total\{kind="irq-line",stage="batched"\} [1-9]/);
  });

  it('applies a new threshold at run time, without reloading', async () => {
    const loads = (await vm.run('dmesg | grep -c "irqtrace: tracing:" || true')).trim();
    ingest.push({ version: toLong(2n), traces: [lineTrace(5_000_000n)] });
    await waitUntil('config v2 in effect', 60_000, async () => Promise.resolve(ingest.states.some((s) => toBigInt(s.configVersion) === 2n && s.phase === pb.BackendState.Phase.PHASE_RUNNING)));
    expect((await vm.run('cat /sys/module/irqtrace/parameters/threshold_ns')).trim()).toBe('5000000');
    const [short, long] = await rig.irqburn(`irqline ${line} 1500 1`, `irqline ${line} 8000 1`);
    await waitUntil('the long masking at the ingest', 60_000, async () => Promise.resolve(eventsOf(must(long)).length > 0));
    // Judged by its real length: a host stall can stretch the selftest's 1.5 ms sleep past the threshold.
    const shortReport = must(short);
    const [inner, outer] = [BigInt(shortReport.fields.inner_ns ?? '0'), BigInt(shortReport.fields.outer_ns ?? '0')];
    if (outer < 5_000_000n) expect(eventsOf(shortReport)).toHaveLength(0);
    else if (inner >= 5_000_000n) expect(eventsOf(shortReport)).toHaveLength(1);
    else console.log(`agent: the short masking took ${inner}..${outer} ns, across the threshold: either is right`);
    expect((await vm.run('dmesg | grep -c "irqtrace: tracing:" || true')).trim()).toBe(loads);
  });

  it('unloads everything when no trace applies, and on SIGTERM', async () => {
    ingest.push({ version: toLong(3n), traces: [] });
    await waitOrExplain('the module unloaded', 60_000, async () => !(await moduleLoaded()));
    await waitOrExplain('the idle state reported', 30_000, async () =>
      Promise.resolve(ingest.states.some((s) => toBigInt(s.configVersion) === 3n && s.phase === pb.BackendState.Phase.PHASE_IDLE)),
    );
    ingest.push({ version: toLong(4n), traces: [lineTrace(1_000_000n)] });
    await waitUntil('the module loaded again', 120_000, moduleLoaded);
    const { code, log } = await stopAgent();
    expect(code, log).toBe(0);
    expect(await moduleLoaded()).toBe(false);
    // Structured logs, one JSON object a line.
    const lines = log.trim().split('\n');
    expect(lines.every((l) => l.startsWith('{'))).toBe(true);
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('backend state');
  });
});

describe('irqtrace agent standalone', () => {
  it('traces from its config file into the local store, which list shows and clear empties', async () => {
    const config = `traces:\n  - name: serial\n    target: [${line}]\n    threshold: 1ms\n    backend: kmod\nstore: ${RUN}-store/events.jsonl\n`;
    await vm.execHost(`mkdir -p ${RUN}-store && printf '%s' '${config}' > ${RUN}-store/config.yaml`);
    await startAgent(`--config ${RUN}-store/config.yaml --module ${rig.modules.irqtrace}`);
    // Not just /sys/module/irqtrace: that appears before the module's init has hooked anything.
    await waitUntil('the backend running', 300_000, async () => (await vm.execHost(`cat ${RUN}/log`)).stdout.includes('"phase":"running"'));
    const [masked] = await rig.irqburn(`irqline ${line} 3000 2`);
    try {
      await waitUntil('the event in the store', 60_000, async () => (await vm.execHost(`cat ${RUN}-store/events.jsonl 2>/dev/null`)).stdout.includes('irqburn'));
    } catch (err) {
      throw new Error(`${String(err)}\nagent log:\n${(await vm.execHost(`cat ${RUN}/log`)).stdout}`);
    }
    const { code } = await stopAgent();
    expect(code).toBe(0);
    const listed = await vm.execHost(`node ${CLI} list --store ${RUN}-store/events.jsonl`, { timeoutMs: 300_000 });
    expect(listed.stdout).toMatch(new RegExp(`irq-line ${line}\\s+\\d+\\s+[\\d.]+ ms\\s+exact/exact\\s+irqburn/${must(masked).pid}\\s+-\\s+-\\s+irqburn_mask_line`));
    await vm.execHost(`node ${CLI} clear --store ${RUN}-store/events.jsonl`, { timeoutMs: 300_000 });
    expect((await vm.execHost(`node ${CLI} list --store ${RUN}-store/events.jsonl`, { timeoutMs: 300_000 })).stderr).toMatch(/0 violations/);
  });
});
