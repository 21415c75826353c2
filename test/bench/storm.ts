// A storm of faults while agents stream (pipeline_rig.ts), as an operator
// meets them: nats-server stopped for 3 s and started on the same store, the
// ingest SIGKILLed and started again, the status leader SIGKILLed and started
// again. Afterwards the status must count what the agents sent, to the event:
// everything acked is in JetStream, and the status counts JetStream once.
import { setTimeout as sleep } from 'node:timers/promises';
import { waitUntil } from '../lib/wait.js';
import type { PipelineRig } from './pipeline_rig.js';

export type Fault = 'nats' | 'ingest' | 'leader';

export interface StormOptions {
  seconds: number;
  /** Each fault at its second after the start. */
  faults: { at: number; fault: Fault }[];
  /** Batches each agent keeps queued. */
  queued: number;
  /** How long the status may take to count everything after the last ack. */
  settleMs: number;
  log?: (line: string) => void;
}

export interface StormResult {
  sent: number;
  counted: number;
  faults: number;
  ackedS: number;
  settledS: number;
}

async function inject(rig: PipelineRig, fault: Fault): Promise<void> {
  if (fault === 'nats') {
    await rig.nats.stop({ keepStore: true });
    await sleep(3000);
    await rig.nats.restart();
  } else if (fault === 'ingest') {
    await rig.kill('ingest');
    rig.run('ingest');
    await rig.ingestListening();
  } else {
    await rig.kill('leader');
    rig.run('leader');
  }
}

export async function storm(rig: PipelineRig, o: StormOptions): Promise<StormResult> {
  const log = o.log ?? ((line: string) => { console.log(line); });
  const started = Date.now();
  const faults = o.faults.map(async ({ at, fault }) => {
    await sleep(at * 1000);
    const t0 = Date.now();
    await inject(rig, fault);
    log(`storm: ${fault} fault at ${((t0 - started) / 1000).toFixed(1)} s, recovered in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  await rig.stream(started + o.seconds * 1000, o.queued);
  await Promise.all(faults);
  const sent = rig.sent;
  await rig.allAcked(300_000);
  const ackedAt = Date.now();
  let counted = 0;
  await waitUntil('the status counting every event', o.settleMs, async () => {
    counted = (await rig.status()).violations ?? 0;
    return counted >= sent;
  }, 1000).catch(() => undefined);
  // Nothing more comes: a count past `sent` would show now.
  await sleep(3000);
  counted = (await rig.status()).violations ?? 0;
  return { sent, counted, faults: o.faults.length, ackedS: (ackedAt - started) / 1000, settledS: (Date.now() - ackedAt) / 1000 };
}
