// `irqtrace bench`: how many records a second this machine's agent turns into
// batched events on one core, and its memory. Records in the uapi format,
// their sites and stacks real text addresses of this kernel, go through the
// agent's own path: stream decoder, record pipeline (trace filter, task,
// cgroup and pod attribution, offender enrichment, symbolization), encoding,
// batching into the outbox, and the Prometheus counts.
import { readFile, readdir } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { procFs } from '../attribution/procfs.js';
import { AgentMetrics } from '../daemon/metrics.js';
import { Batcher } from '../pipeline/batcher.js';
import { RecordPipeline } from '../pipeline/record_pipeline.js';
import { ABI_VERSION, Edge, Kind, MAGIC, Method, RECORD, RecordFlag } from '../records/layout.js';
import { ItemStreamDecoder } from '../records/stream.js';
import type { SectionRecord } from '../records/decode.js';
import { Outbox } from '../transport/outbox.js';

export interface BenchScenario {
  name: string;
  /** Distinct sites + stacks the records cycle through. */
  codePaths: number;
}

export interface BenchOptions {
  events: number;
  frames: number;
  /** Distinct tasks (live pids of this machine) the records name. */
  tasks: number;
  scenarios: BenchScenario[];
  proc?: string;
}

export interface ScenarioResult {
  name: string;
  codePaths: number;
  events: number;
  seconds: number;
  eventsPerSecond: number;
  batches: number;
  peakRssMb: number;
}

export interface BenchResult {
  symbols: number;
  idleRssMb: number;
  scenarios: ScenarioResult[];
}

export const DEFAULT_SCENARIOS: BenchScenario[] = [
  // A violation storm: a few code paths, over and over.
  { name: 'storm', codePaths: 64 },
  // More code paths than the agent's caches keep: each record decoded,
  // symbolized and encoded afresh (the cold path).
  { name: 'cold', codePaths: 1 << 20 },
];

// memoryUsage.rss() reads RSS alone; memoryUsage() walks the heap spaces too.
const rssMb = (): number => process.memoryUsage.rss() / 1024 / 1024;

/** A full collection, for a fair idle figure (node runs without --expose-gc). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
}

async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    collectGarbage();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Text addresses of this kernel (just past each symbol's start), as two 32-bit halves. */
async function textAddresses(proc: string, max: number): Promise<Uint32Array> {
  const out: number[] = [];
  for (const line of (await readFile(`${proc}/kallsyms`, 'latin1')).split('\n')) {
    const [addr, type] = line.split(' ');
    if (!addr || !(type === 't' || type === 'T') || /^0+$/.test(addr)) continue;
    const a = BigInt(`0x${addr}`) + 0x10n;
    out.push(Number(a >> 32n), Number(a & 0xffffffffn));
    if (out.length >= 2 * max) break;
  }
  if (out.length < 200) throw new Error(`no kernel text addresses in ${proc}/kallsyms (needs CAP_SYSLOG: run as root)`);
  return Uint32Array.from(out);
}

/** Live pids to attribute records to: this process first, then others. */
async function livePids(proc: string, n: number): Promise<number[]> {
  const others = (await readdir(proc)).filter((e) => /^\d+$/.test(e)).map(Number).filter((p) => p !== process.pid);
  return [process.pid, ...others].slice(0, n);
}

/** Fills buf with records; record i of the run uses code path (first + i) mod codePaths. */
class RecordWriter {
  readonly size: number;

  constructor(
    private readonly frames: number,
    private readonly addresses: Uint32Array,
    private readonly pids: number[],
  ) {
    this.size = RECORD.size + 8 * frames;
  }

  private address(buf: Buffer, at: number, index: number): void {
    const n = this.addresses.length / 2;
    const k = index % n;
    buf.writeUInt32LE(this.addresses[2 * k + 1] ?? 0, at);
    buf.writeUInt32LE(this.addresses[2 * k] ?? 0, at + 4);
  }

  fill(buf: Buffer, count: number, first: number, codePaths: number): void {
    const f = RECORD.fields;
    const n = this.addresses.length / 2;
    for (let r = 0; r < count; r++) {
      const i = first + r;
      const path = i % codePaths;
      const at = r * this.size;
      buf.fill(0, at, at + this.size);
      buf.writeUInt32LE(MAGIC.record, at);
      buf.writeUInt16LE(ABI_VERSION, at + 4);
      buf.writeUInt16LE(this.size, at + 6);
      buf.writeUInt8(Kind.IrqsOff, at + f.kind.offset);
      buf.writeUInt8(Method.Exact, at + f.method.offset);
      buf.writeUInt8(1, at + f.backend.offset);
      // Sites valid, both ends exact (the tracepoints), as the exact method writes them.
      buf.writeUInt8(RecordFlag.SitesValid | RecordFlag.StartExact | RecordFlag.EndExact, at + f.flags.offset);
      buf.writeUInt8(Edge.Tracepoint, at + f.start_by.offset);
      buf.writeUInt8(Edge.Tracepoint, at + f.end_by.offset);
      buf.writeUInt16LE(i % 8, at + f.cpu.offset);
      buf.writeUInt16LE(this.frames, at + f.nr_frames.offset);
      buf.writeBigUInt64LE(BigInt(i + 1), at + f.seq.offset);
      buf.writeBigUInt64LE(1_000_000_000n + BigInt(i) * 1000n, at + f.start_ns.offset);
      buf.writeBigUInt64LE(150_000n + BigInt(i % 1000), at + f.duration_ns.offset);
      const pid = this.pids[i % this.pids.length] ?? process.pid;
      buf.writeUInt32LE(pid, at + f.pid.offset);
      buf.writeUInt32LE(pid, at + f.tgid.offset);
      buf.write('storm', at + f.comm.offset, 'latin1');
      // Distinct paths differ in their sites (path mod n, path / n) and stack (7 * path mod n).
      this.address(buf, at + f.disable_ip.offset, path);
      this.address(buf, at + f.disable_parent_ip.offset, Math.floor(path / n) + 1);
      this.address(buf, at + f.enable_ip.offset, path + 3);
      this.address(buf, at + f.enable_parent_ip.offset, path + 5);
      for (let k = 0; k < this.frames; k++) this.address(buf, at + RECORD.size + 8 * k, 7 * path + 13 * k);
    }
  }
}

async function runScenario(
  scenario: BenchScenario,
  o: BenchOptions,
  writer: RecordWriter,
  pipeline: RecordPipeline,
  batcher: Batcher,
): Promise<ScenarioResult> {
  const perChunk = Math.max(1, Math.floor((256 * 1024) / writer.size));
  const chunk = Buffer.alloc(perChunk * writer.size);
  const decoder = new ItemStreamDecoder();
  const batchesBefore = batcher.batches;
  let peak = rssMb();
  let busyNs = 0n;
  let done = 0;
  while (done < o.events) {
    const count = Math.min(perChunk, o.events - done);
    // Making the input is not the agent's work: outside the clock.
    writer.fill(chunk, count, done, scenario.codePaths);
    const started = process.hrtime.bigint();
    for (const item of decoder.items(chunk.subarray(0, count * writer.size))) pipeline.push(item as SectionRecord);
    await pipeline.drained();
    busyNs += process.hrtime.bigint() - started;
    done += count;
    peak = Math.max(peak, rssMb());
  }
  const flushStarted = process.hrtime.bigint();
  batcher.flush();
  busyNs += process.hrtime.bigint() - flushStarted;
  if (pipeline.dropped) throw new Error(`${pipeline.dropped} records dropped by the pipeline`);
  const seconds = Number(busyNs) / 1e9;
  return {
    name: scenario.name,
    codePaths: scenario.codePaths,
    events: done,
    seconds,
    eventsPerSecond: Math.round(done / seconds),
    batches: batcher.batches - batchesBefore,
    peakRssMb: peak,
  };
}

export async function benchPipeline(o: BenchOptions): Promise<BenchResult> {
  const proc = o.proc ?? '/proc';
  const metrics = new AgentMetrics();
  // The ingest acks promptly here: the outbox keeps a few batches, not all.
  const outbox = new Outbox({ maxBytes: 64 << 20 });
  let acked = 0n;
  const failures: unknown[] = [];
  const batcher = new Batcher(outbox, {
    onBatch: (seq) => {
      if (seq - acked > 8n) {
        acked = seq - 8n;
        outbox.ack(acked);
      }
    },
  });
  const pipeline = new RecordPipeline({
    proc: procFs(proc),
    counters: metrics.pipelineCounters(),
    onEvent: (event) => { batcher.add(event); },
    onError: (err) => { failures.push(err); },
  });
  pipeline.setTraces([{ name: 'bench', all: true, irqs: [], thresholdNs: 100_000n, method: 'auto', backend: 'auto', periodNs: 1_000_000n, softirqs: false, stacks: true, endUnixNs: 0n }]);
  await pipeline.symbols.refresh();
  await settle();
  const idleRssMb = rssMb();

  const writer = new RecordWriter(o.frames, await textAddresses(proc, 20_000), await livePids(proc, o.tasks));
  const scenarios: ScenarioResult[] = [];
  for (const scenario of o.scenarios) {
    scenarios.push(await runScenario(scenario, o, writer, pipeline, batcher));
    if (failures.length) throw new Error(`${failures.length} records failed in the pipeline, the first: ${String(failures[0])}`);
  }
  return { symbols: pipeline.symbols.symbols.size, idleRssMb, scenarios };
}
