// `npm run soak:pipeline`: agents stream for 40 s through the real ingest,
// JetStream and status aggregator while nats-server is stopped twice (3 s,
// same store), the ingest is SIGKILLed twice and the status leader once
// (test/bench/storm.ts). The status must then count every event sent, none
// twice; the run fails otherwise. SOAK_AGENTS and SOAK_SECONDS change its size.
import { PipelineRig } from '../bench/pipeline_rig.js';
import { storm } from '../bench/storm.js';

const AGENTS = Number(process.env.SOAK_AGENTS ?? 20);
const SECONDS = Number(process.env.SOAK_SECONDS ?? 40);

const rig = await PipelineRig.start('soak-pipeline');
try {
  await rig.connectAgents(AGENTS, 4);
  const at = (fraction: number): number => Math.round(SECONDS * fraction);
  const r = await storm(rig, {
    seconds: SECONDS,
    queued: 8,
    settleMs: 300_000,
    faults: [
      { at: at(0.12), fault: 'nats' },
      { at: at(0.3), fault: 'ingest' },
      { at: at(0.45), fault: 'leader' },
      { at: at(0.6), fault: 'nats' },
      { at: at(0.75), fault: 'ingest' },
    ],
  });
  const lost = Math.max(0, r.sent - r.counted);
  const dup = Math.max(0, r.counted - r.sent);
  console.log(`soak:pipeline: ${AGENTS} agents, ${SECONDS} s, ${r.faults} faults: sent ${r.sent}, all acked ${r.ackedS.toFixed(1)} s after the start, status ${r.counted} ${r.settledS.toFixed(1)} s later`);
  console.log(`soak:pipeline agents=${AGENTS} seconds=${SECONDS} faults=${r.faults} sent=${r.sent} counted=${r.counted} lost=${lost} dup=${dup}`);
  if (lost || dup) process.exitCode = 1;
} finally {
  await rig.stop();
}
