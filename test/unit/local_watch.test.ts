// The agent's local event stream and `irqtrace record` reading it, over a real
// unix socket: what a reader sees (the agent first, then its events, filtered
// by the command's target and threshold), a slow reader's losses counted to
// the event, and a missing, stale or stopping agent.
import { createServer } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentLocalClient, irqtrace, toLong } from '@irqtrace/proto';
import { LocalWatchServer } from '../../agent/src/daemon/local_watch.js';
import { readAgent } from '../../agent/src/cli/record_agent.js';
import { DEFAULT_KERNEL_CONFIG } from '../../agent/src/config/kernel_config.js';
import type { KernelConfig } from '../../agent/src/config/kernel_config.js';

const pb = irqtrace.v1;
const log = pino({ level: 'silent' });

function capture(): { io: { out: Writable; err: Writable }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (add: (s: string) => void) => new Writable({ write(chunk, _enc, done) { add(String(chunk)); done(); } });
  return { io: { out: sink((s) => (out += s)), err: sink((s) => (err += s)) }, out: () => out, err: () => err };
}

function event(durationMs: number, over: Partial<irqtrace.v1.IEvent> = {}): irqtrace.v1.IEvent {
  return {
    kind: pb.SectionKind.SECTION_KIND_IRQS_OFF,
    method: pb.Method.METHOD_EXACT,
    cpu: 1,
    startNs: toLong(process.hrtime.bigint()),
    durationNs: toLong(BigInt(durationMs) * 1_000_000n),
    task: { pid: 1153, tgid: 1153, comm: 'sh', podUid: '6a3c1f0e-3b2d-4c7a-9f1e-2d4b5c6a7e8f', podNamespace: 'workload', podName: 'offender-tracing' },
    stack: [{ address: toLong(0xffffffff81000000n), symbol: 'irqburn_write' }],
    traces: ['all-cpus'],
    ...over,
  };
}

const info = (): irqtrace.v1.IAgentInfo => ({
  node: 'node-tracing',
  pid: 4242,
  state: { phase: pb.BackendState.Phase.PHASE_RUNNING, backend: pb.Backend.BACKEND_KMOD, irqsOffMethod: pb.Method.METHOD_EXACT },
  traces: [{ name: 'all-cpus', thresholdNs: toLong(2_000_000n) }],
});

const cfg = (over: Partial<KernelConfig> = {}): KernelConfig => ({ ...DEFAULT_KERNEL_CONFIG, ...over });
const servers: LocalWatchServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function serve(): Promise<{ server: LocalWatchServer; socket: string }> {
  const socket = join(mkdtempSync(join(tmpdir(), 'irqtrace-local-')), 'run', 'agent.sock');
  const server = new LocalWatchServer({ socket, info, log });
  servers.push(server);
  await server.start();
  return { server, socket };
}

async function until(what: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!what()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(10);
  }
}

// Hybrid: the lock function's call timed the start exactly; the end is within the bound.
const hybrid = {
  method: pb.Method.METHOD_HYBRID,
  errorBoundNs: toLong(1_000_000n),
  start: { source: pb.EdgeSource.EDGE_SOURCE_LOCK, exact: true },
  end: { source: pb.EdgeSource.EDGE_SOURCE_HANDLER, exact: false },
  lock: { address: toLong(0xffffffff82a05040n), symbol: 'tasklist_lock' },
};

describe('the agent local event stream', () => {
  it("shows the agent's events that the command's target and threshold want, naming the pod", async () => {
    const { server, socket } = await serve();
    const c = capture();
    const reading = readAgent({ socket, cfg: cfg({ thresholdNs: 3_000_000n, irqs: [24] }), thresholdGiven: true, ignored: ['method'], json: false, durationMs: 1500 }, c.io);
    await until(() => server.readers === 1);
    server.publish(event(80, hybrid), 80_000_000n);
    // Under the command's threshold.
    server.publish(event(2), 2_000_000n);
    server.publish(event(5, { kind: pb.SectionKind.SECTION_KIND_IRQ_LINE, irq: 24, task: { pid: 7, comm: 'kworker/1:0' } }), 5_000_000n);
    // An IRQ line the target does not name.
    server.publish(event(5, { kind: pb.SectionKind.SECTION_KIND_IRQ_LINE, irq: 25 }), 5_000_000n);
    expect(await reading).toBe(0);
    const rows = c.out().trim().split('\n');
    expect(rows[0]).toMatch(/^TIME\s+KIND/);
    expect(rows.slice(1)).toHaveLength(2);
    expect(rows[1]).toMatch(/irqs-off\s+1\s+80\.0 ms exact\/±1\.00 ms\s+sh\/1153\s+workload\/offender-tracing\s+tasklist_lock\s+irqburn_write/);
    expect(rows[2]).toMatch(/irq-line 24\s+1\s+5\.00 ms exact\/exact\s+kworker\/1:0\/7\s+-\s+-\s+irqburn_write/);
    expect(c.err()).toContain('the node agent runs the kernel side here; showing its events (node node-tracing, pid 4242: kmod, irqs-off exact; traces: all-cpus (2.00 ms))');
    expect(c.err()).toContain("--method: the agent's traces choose these; ignored");
    expect(c.err()).toContain('2 violations shown; lost: 0 by this reader');
    await until(() => server.readers === 0);
  });

  it('says when the threshold asked for is under what the agent records', async () => {
    const { socket } = await serve();
    const c = capture();
    expect(await readAgent({ socket, cfg: cfg({ thresholdNs: 500_000n }), thresholdGiven: true, ignored: [], json: true, durationMs: 200 }, c.io)).toBe(0);
    expect(c.err()).toContain('the agent records sections of 2.00 ms and longer: shorter ones are not seen');
  });

  it('counts every event a slow reader missed, and tells it', async () => {
    const { server, socket } = await serve();
    const client = new AgentLocalClient(`unix:${socket}`, grpc.credentials.createInsecure());
    const call = client.watch({});
    let events = 0;
    let lost = 0;
    let first: irqtrace.v1.IAgentInfo | undefined;
    call.on('data', (m: irqtrace.v1.WatchMessage) => {
      if (m.agent) first = m.agent;
      if (m.event) events++;
      if (m.loss) lost += Number(m.loss.count);
    });
    call.on('error', () => {});
    await until(() => first !== undefined);
    expect(first?.node).toBe('node-tracing');
    call.pause();
    const sent = 20_000;
    for (let i = 0; i < sent; i++) server.publish(event(80), 80_000_000n);
    call.resume();
    // The loss message comes when the reader drains; a last event makes sure it has.
    await until(() => events + lost === sent, 20_000);
    expect(lost).toBeGreaterThan(0);
    server.publish(event(80, hybrid), 80_000_000n);
    await until(() => events + lost === sent + 1);
    call.cancel();
    client.close();
  });

  it('traces by itself when no agent is there or none answers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'irqtrace-local-'));
    const c = capture();
    expect(await readAgent({ socket: join(dir, 'none.sock'), cfg: cfg(), thresholdGiven: false, ignored: [], json: false }, c.io)).toBeUndefined();
    expect(c.err()).toBe('');
    // A socket left by an agent that was killed: nothing listens.
    const stale = join(dir, 'stale.sock');
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(stale, resolve));
    await new Promise<void>((resolve) => listener.close(() => { resolve(); }));
    writeFileSync(stale, '');
    expect(await readAgent({ socket: stale, cfg: cfg(), thresholdGiven: false, ignored: [], json: false }, c.io)).toBeUndefined();
    expect(c.err()).toMatch(/no node agent answers on .*stale\.sock \(.*\): tracing here/);
  });

  it('fails when the agent stops under it', async () => {
    const { server, socket } = await serve();
    const c = capture();
    const reading = readAgent({ socket, cfg: cfg(), thresholdGiven: false, ignored: [], json: true }, c.io);
    await until(() => server.readers === 1);
    server.publish(event(80, hybrid), 80_000_000n);
    await until(() => c.out().length > 0);
    await server.stop();
    expect(await reading).toBe(1);
    const [shown, summary, ...rest] = c.out().trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(shown).toMatchObject({ kind: 'SECTION_KIND_IRQS_OFF', task: { podNamespace: 'workload', podName: 'offender-tracing' } });
    // --json ends with a summary, which an event is told from by its type.
    expect(summary).toMatchObject({ type: 'summary', source: 'agent', violationsShown: 1, lost: { reader: '0' } });
    expect(rest).toEqual([]);
    expect(c.err()).toMatch(/1 violations shown.*\n.*the agent's stream failed: the agent ended the stream/);
  });
});
