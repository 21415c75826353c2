// A short storm (test/bench/storm.ts) in the cluster suite: 10 agents stream
// for 24 s through the real ingest, nats-server and status aggregator while
// each fault hits once: nats-server stopped for 3 s (same store), the ingest
// SIGKILLed, the status leader SIGKILLed; every process started again. The
// status counts every event sent, none twice. `npm run soak:pipeline` is the
// long one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PipelineRig } from '../../test/bench/pipeline_rig.js';
import { storm } from '../../test/bench/storm.js';

let rig: PipelineRig;

beforeAll(async () => {
  rig = await PipelineRig.start('storm');
  await rig.connectAgents(10, 4);
});

afterAll(async () => {
  await rig.stop();
});

describe('a storm of faults', () => {
  it('leaves the status counting every event sent, once', async () => {
    const r = await storm(rig, {
      seconds: 24,
      queued: 8,
      settleMs: 120_000,
      faults: [
        { at: 4, fault: 'nats' },
        { at: 10, fault: 'ingest' },
        { at: 15, fault: 'leader' },
      ],
    });
    console.log(`storm: agents=10 seconds=24 faults=${r.faults} sent=${r.sent} counted=${r.counted} acked_s=${r.ackedS.toFixed(1)} settled_s=${r.settledS.toFixed(1)}`);
    expect(r.sent).toBeGreaterThan(10_000);
    expect(r.counted).toBe(r.sent);
  }, 600_000);
});
