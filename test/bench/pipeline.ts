// `npm run bench:pipeline`: N simulated agents stream as fast as they are
// acked through the real ingest, JetStream and status aggregator into an
// IrqTrace's status (pipeline_rig.ts). Counted end to end: events/s until the
// status shows every event sent, what was lost or counted twice, and the lag
// from a probe event to the status.
import { irqtrace, toLong } from '@irqtrace/proto';
import { Outbox } from '@irqtrace/agent';
import { waitUntil } from '../lib/wait.js';
import { PER_BATCH, PipelineRig, TRACE } from './pipeline_rig.js';

const v1 = irqtrace.v1;
const AGENTS = Number(process.env.BENCH_AGENTS ?? 200);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const IN_FLIGHT = 4;

async function main(): Promise<void> {
  const rig = await PipelineRig.start('bench-pipeline');
  try {
    await rig.connectAgents(AGENTS, IN_FLIGHT);

    // A probe agent: one event a second, each longer than any before, timed into the status.
    const probeOutbox = new Outbox();
    const probe = rig.client({ address: `127.0.0.1:${rig.ingestPort}`, outbox: probeOutbox, hello: () => ({ node: 'probe', bootId: 'b', lastAckedSeq: toLong(probeOutbox.ackedSeq), protocolVersion: 1 }) });
    probe.start();
    const probes: { durationNs: number; sentAt: number; seenAt?: number }[] = [];

    const started = Date.now();
    let probeSeq = 0n;
    const probeTimer = setInterval(() => {
      probeSeq++;
      const durationNs = 50_000_000 + probes.length;
      probes.push({ durationNs, sentAt: Date.now() });
      probeOutbox.add(v1.EventBatch.create({ seq: toLong(probeSeq), events: [{ kind: v1.SectionKind.SECTION_KIND_IRQS_OFF, durationNs: toLong(BigInt(durationNs)), task: { pid: 1, comm: 'probe' }, traces: [TRACE] }] }));
      probe.pump();
    }, 1000);
    const watcher = setInterval(() => {
      void rig.status().then((s) => {
        for (const p of probes) if (!p.seenAt && (s.maxDurationNs ?? 0) >= p.durationNs) p.seenAt = Date.now();
      }, () => {});
    }, 100);

    await rig.stream(started + SECONDS * 1000, IN_FLIGHT * 2);
    clearInterval(probeTimer);
    const sent = rig.sent + probes.length;
    await rig.allAcked(300_000, () => probeOutbox.size === 0);
    const ackedAt = Date.now();
    let counted = 0;
    const caughtUp = await waitUntil('the status counts every event', 300_000, async () => {
      counted = (await rig.status()).violations ?? 0;
      return counted >= sent;
    }).then(() => Date.now(), () => Date.now());
    await new Promise((resolve) => setTimeout(resolve, 3000));
    counted = (await rig.status()).violations ?? 0;
    clearInterval(watcher);

    const seconds = (caughtUp - started) / 1000;
    const lags = probes.filter((p) => p.seenAt).map((p) => ((p.seenAt ?? 0) - p.sentAt) / 1000).sort((a, b) => a - b);
    const p99 = lags.length ? (lags[Math.min(lags.length - 1, Math.ceil(lags.length * 0.99) - 1)] ?? 0) : Infinity;
    const lost = Math.max(0, sent - counted);
    const dup = Math.max(0, counted - sent);
    console.log(`bench:pipeline: ${AGENTS} agents, ${SECONDS} s of ${PER_BATCH}-event batches: sent ${sent} events; all acked after ${((ackedAt - started) / 1000).toFixed(1)} s (${Math.round(sent / ((ackedAt - started) / 1000))} ev/s into JetStream); status counted ${counted} after ${seconds.toFixed(1)} s`);
    console.log(`bench:pipeline: status lag of ${lags.length}/${probes.length} probes: p50 ${(lags[Math.floor(lags.length / 2)] ?? 0).toFixed(2)} s, p99 ${p99.toFixed(2)} s, max ${(lags.at(-1) ?? 0).toFixed(2)} s`);
    console.log(`bench:pipeline events_per_s=${Math.round(sent / seconds)} lost=${lost} dup=${dup} p99_status_lag_s=${p99.toFixed(2)}`);
    // A count that is not exact is a defect, not a figure: the run fails.
    if (lost || dup) process.exitCode = 1;
  } finally {
    await rig.stop();
  }
}

await main();
