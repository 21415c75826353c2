// A record waits in the agent's queue while /proc is read for the one before
// it; a configuration change meanwhile must not change what it counts for.
import { describe, expect, it } from 'vitest';
import type { irqtrace } from '@irqtrace/proto';
import { Backend, Context, Edge, Kind, Method, RecordFlag } from '@irqtrace/agent';
import type { ProcFs, SectionRecord, Trace } from '@irqtrace/agent';
import { RecordPipeline } from '../../agent/src/pipeline/record_pipeline.js';

const base: Trace = { name: 'lab', all: true, irqs: [], thresholdNs: 1_000_000n, method: 'auto', backend: 'auto', periodNs: 1_000_000n, softirqs: false, stacks: false, endUnixNs: 0n };

function rec(pid: number, endNs: bigint, durationNs = 2_000_000n): SectionRecord {
  const code = { disableIp: 0n, disableParentIp: 0n, enableIp: 0n, enableParentIp: 0n, frames: [] };
  return {
    type: 'record', kind: Kind.IrqsOff, method: Method.Exact, backend: Backend.Kmod, flags: RecordFlag.SitesValid,
    cpu: 0, irq: 0, enableCpu: 0, seq: 1n, startNs: endNs - durationNs, durationNs, errorNs: 0n, cgroupId: 0n,
    pid, tgid: pid, comm: 'irqburn', enablePid: 0, enableTgid: 0, enableComm: '', context: Context.Task, contextNr: 0, contextFn: 0n,
    startBy: Edge.Tracepoint, endBy: Edge.Tracepoint, lock: 0n,
    ...code, code,
  };
}

/** A /proc whose reads wait until let go: the first record stays in attribution. */
function heldProc(): { proc: ProcFs; release: () => void } {
  let release = () => {};
  const held = new Promise<void>((resolve) => { release = resolve; });
  const proc: ProcFs = {
    read: async () => { await held; return undefined; },
    chunks: async function* () { /* no symbols */ },
    list: async () => { await held; return []; },
    link: async () => { await held; return undefined; },
  };
  return { proc, release };
}

describe('the record pipeline', () => {
  it('counts a queued record for the traces in force when its section ended', async () => {
    const { proc, release } = heldProc();
    const events: { pid: number; traces: string[] }[] = [];
    const failures: unknown[] = [];
    const pipeline = new RecordPipeline({
      proc,
      enrich: false,
      onEvent: (e: irqtrace.v1.IEvent, r) => { events.push({ pid: r.pid, traces: e.traces ?? [] }); },
      onError: (err) => { failures.push(err); },
    });
    pipeline.setTraces([base, { ...base, name: 'deleted' }], 0n);
    // Both sections end before t = 2 s, the second waits behind the first's /proc reads...
    expect(pipeline.push(rec(41, 1_000_000_000n))).toBe(true);
    expect(pipeline.push(rec(42, 1_500_000_000n))).toBe(true);
    // ...the third ends after it.
    expect(pipeline.push(rec(43, 2_500_000_000n))).toBe(true);
    // At t = 2 s the threshold goes out of reach and one trace is deleted.
    pipeline.setTraces([{ ...base, thresholdNs: 60_000_000_000n }], 2_000_000_000n);
    release();
    await pipeline.drained();
    expect(failures).toEqual([]);
    // The first was matched before the change came (then its /proc reads began); the second after,
    // by the traces of its time that remain; the third by the new threshold.
    expect(events).toEqual([{ pid: 41, traces: ['lab', 'deleted'] }, { pid: 42, traces: ['lab'] }]);
  });
});
