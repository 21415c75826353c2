// `npm run bench:agent`: the agent's pipeline as fast as it goes on one core.
// Synthetic records in the uapi format (16-frame stacks of real kernel text
// addresses from this machine's /proc/kallsyms) are decoded from 256 KiB
// chunks, symbolized, attributed (cache hits, as a violation storm from a few
// tasks is), made into Events and batched into encoded EventBatches. Prints
// events/s and the process RSS idle (symbols loaded) and under load.
import { readFileSync } from 'node:fs';
import {
  ABI_VERSION, Batcher, ItemStreamDecoder, Kind, MAGIC, Method, Outbox, RECORD, SymbolSource, TaskAttributor, procFs, toEvent,
} from '@irqtrace/agent';
import type { SectionRecord } from '@irqtrace/agent';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 400_000);
const FRAMES = 16;
const rssMb = () => process.memoryUsage().rss / 1024 / 1024;

function textAddresses(): bigint[] {
  const out: bigint[] = [];
  for (const line of readFileSync('/proc/kallsyms', 'utf8').split('\n')) {
    const [addr, type] = line.split(' ');
    if (addr && (type === 't' || type === 'T') && !/^0+$/.test(addr)) out.push(BigInt(`0x${addr}`) + 0x10n);
    if (out.length >= 20_000) break;
  }
  if (out.length < 100) throw new Error('no kernel addresses in /proc/kallsyms (run as root)');
  return out;
}

function records(n: number, addresses: bigint[]): Buffer {
  const size = RECORD.size + 8 * FRAMES;
  const buf = Buffer.alloc(size * n);
  const f = RECORD.fields;
  for (let i = 0; i < n; i++) {
    const at = i * size;
    buf.writeUInt32LE(MAGIC.record, at);
    buf.writeUInt16LE(ABI_VERSION, at + 4);
    buf.writeUInt16LE(size, at + 6);
    buf.writeUInt8(Kind.IrqsOff, at + f.kind.offset);
    buf.writeUInt8(Method.Exact, at + f.method.offset);
    buf.writeUInt8(1, at + f.backend.offset);
    buf.writeUInt8(4, at + f.flags.offset);
    buf.writeUInt16LE(i % 8, at + f.cpu.offset);
    buf.writeUInt16LE(FRAMES, at + f.nr_frames.offset);
    buf.writeBigUInt64LE(BigInt(i + 1), at + f.seq.offset);
    buf.writeBigUInt64LE(1_000_000_000n + BigInt(i) * 1000n, at + f.start_ns.offset);
    buf.writeBigUInt64LE(150_000n + BigInt(i % 1000), at + f.duration_ns.offset);
    buf.writeUInt32LE(process.pid, at + f.pid.offset);
    buf.writeUInt32LE(process.pid, at + f.tgid.offset);
    buf.write('storm', at + f.comm.offset, 'latin1');
    const pick = (k: number) => addresses[(i * 7 + k * 13) % addresses.length] ?? 0n;
    buf.writeBigUInt64LE(pick(0), at + f.disable_ip.offset);
    buf.writeBigUInt64LE(pick(1), at + f.enable_ip.offset);
    for (let k = 0; k < FRAMES; k++) buf.writeBigUInt64LE(pick(k + 2), at + RECORD.size + 8 * k);
  }
  return buf;
}

async function main(): Promise<void> {
  const proc = procFs();
  const symbols = new SymbolSource(proc);
  await symbols.refresh();
  const tasks = new TaskAttributor(proc);
  const outbox = new Outbox({ maxBytes: 1 << 30 });
  let acked = 0n;
  // The ingest acks promptly in this bench: keep the outbox from holding every batch.
  const batcher = new Batcher(outbox, { maxEvents: 500, onBatch: (seq) => { if (seq - acked > 8n) { outbox.ack(seq - 8n); acked = seq - 8n; } } });
  global.gc?.();
  const idleRss = rssMb();
  console.log(`bench:agent: ${symbols.symbols.size} kernel symbols loaded; ${EVENTS} records of ${FRAMES} frames; idle RSS ${idleRss.toFixed(1)} MB`);

  const input = records(EVENTS, textAddresses());
  let peakRss = rssMb();
  const decoder = new ItemStreamDecoder();
  const started = process.hrtime.bigint();
  let events = 0;
  const CHUNK = 256 * 1024;
  for (let at = 0; at < input.length; at += CHUNK) {
    for (const item of decoder.push(input.subarray(at, at + CHUNK))) {
      const rec = item as SectionRecord;
      const task = await tasks.attribute(rec.pid, rec.cgroupId);
      const event = toEvent(rec, symbols.symbols, task ? { task } : {});
      event.traces = ['bench'];
      batcher.add(event);
      events++;
    }
    peakRss = Math.max(peakRss, rssMb());
  }
  batcher.flush();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const rate = Math.round(events / seconds);
  console.log(`decoded + symbolized + attributed + batched: ${events} events in ${seconds.toFixed(2)} s on one core; ${batcher.batches} batches; peak RSS ${peakRss.toFixed(1)} MB`);
  console.log(`targets: >= 200000 events/s (${rate >= 200_000 ? 'met' : 'missed'}), RSS <= 80 MB idle (${idleRss <= 80 ? 'met' : 'missed'}), <= 120 MB under load (${peakRss <= 120 ? 'met' : 'missed'})`);
  console.log(`bench:agent events_per_s=${rate} rss_mb=${peakRss.toFixed(0)} idle_rss_mb=${idleRss.toFixed(0)}`);
}

main().catch((err: unknown) => {
  console.error('bench:agent failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
