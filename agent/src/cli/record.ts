// `irqtrace record`: trace this machine, print violations as they happen
// (a table, or one JSON object per event), and the histograms at the end.
import { readFileSync } from 'node:fs';
import { procFs } from '../attribution/procfs.js';
import { isIrqNamePattern, parseInterrupts, withNamedIrqs } from '../config/irq_names.js';
import type { InterruptLine } from '../config/irq_names.js';
import { CgroupIndex } from '../attribution/cgroup_index.js';
import { startBackend } from '../backend/select.js';
import { BackendError } from '../backend/types.js';
import { ConfigError, DEFAULT_KERNEL_CONFIG, RECORD_METHOD_CHOICES, oneOf, parseDurationNs, validateKernelConfig } from '../config/kernel_config.js';
import type { BackendChoice, KernelConfig, MethodChoice } from '../config/kernel_config.js';
import { RecordPipeline } from '../pipeline/record_pipeline.js';
import type { SectionRecord } from '../records/decode.js';
import { Kind } from '../records/layout.js';
import { PodNames } from '../attribution/pod_names.js';
import { DEFAULT_AGENT_SOCKET } from './defaults.js';
import type { Output } from './output.js';
import { readAgent } from './record_agent.js';
import { untilStopped } from './until_stopped.js';
import { openTraceFile } from './trace_events.js';
import type { TraceEventWriter, TraceFile } from './trace_events.js';
import { ViolationView } from './violation_view.js';
import { backendOptionsOf } from './host_options.js';
import type { HostOptions } from './host_options.js';
import { formatHistogram, formatNs } from './format.js';
import { histogramJson, summaryJson } from './json_summary.js';

export interface RecordOptions extends HostOptions {
  target: string;
  threshold: string;
  method: string;
  backend: string;
  period: string;
  cpus: string;
  stacks: boolean;
  softirqs: boolean;
  duration?: string;
  json: boolean;
  /** A Chrome trace-event file (Perfetto's UI opens it) to write the sections to, as well. */
  output?: string;
  /** Read the node agent's events when it runs here (default), instead of a kernel side of this command's own. */
  agent?: boolean;
  agentSocket?: string;
  /** Options given on the command line (not defaulted). */
  given?: string[];
}

/** Options that choose what the kernel side does: the agent's traces choose them when the agent is read. */
const KERNEL_OPTIONS = ['method', 'backend', 'period', 'cpus', 'stacks', 'softirqs'];

/** "all" (irqs-off and every IRQ line), "irqs-off", or "irq:" and IRQ numbers and names ("irq:24,nvme0q1,eth0-*"). */
export function parseTarget(text: string): { irqs: 'all' | 'none' | number[]; irqNames: string[]; irqsOff: boolean } {
  const t = text.trim();
  if (t === 'all') return { irqs: 'all', irqNames: [], irqsOff: true };
  if (t === 'irqs-off') return { irqs: 'none', irqNames: [], irqsOff: true };
  const items = t.startsWith('irq:') ? t.slice(4).split(',').map((s) => s.trim().replace(/^irq:/, '')) : [];
  if (!items.length || items.some((s) => !/^\d+$/.test(s) && !isIrqNamePattern(s))) {
    throw new ConfigError(`target: '${text}' is not all, irqs-off, or irq: with IRQ numbers or names (irq:24,nvme0q1,eth0-*)`);
  }
  return { irqs: items.filter((s) => /^\d+$/.test(s)).map(Number), irqNames: items.filter((s) => !/^\d+$/.test(s)), irqsOff: false };
}

/** The record command's kernel config; IRQ names are resolved with the machine's /proc/interrupts. */
export function configFromOptions(o: RecordOptions, interrupts: () => InterruptLine[] = () => []): { cfg: KernelConfig; backend: BackendChoice; durationMs?: number } {
  const target = parseTarget(o.target);
  let irqs = target.irqs;
  if (target.irqNames.length && Array.isArray(irqs)) {
    const named = withNamedIrqs(irqs, target.irqNames, interrupts());
    if (named.unmatched.length) throw new ConfigError(`target: no IRQ line named ${named.unmatched.map((n) => `'${n}'`).join(', ')} in /proc/interrupts`);
    irqs = named.irqs;
  }
  const method = oneOf<MethodChoice>(o.method, RECORD_METHOD_CHOICES, 'method');
  const cfg = validateKernelConfig({
    ...DEFAULT_KERNEL_CONFIG,
    method: target.irqsOff ? method : 'off',
    thresholdNs: parseDurationNs(o.threshold, 'threshold'),
    periodNs: parseDurationNs(o.period, 'period'),
    stacks: o.stacks,
    softirqs: o.softirqs,
    cpus: o.cpus,
    irqs,
  });
  const backend = oneOf<BackendChoice>(o.backend, ['auto', 'kmod', 'ebpf'], 'backend');
  const durationMs = o.duration === undefined ? undefined : Number(parseDurationNs(o.duration, 'duration') / 1_000_000n);
  return { cfg, backend, ...(durationMs === undefined ? {} : { durationMs }) };
}

export async function record(o: RecordOptions, io: Output = { out: process.stdout, err: process.stderr }): Promise<number> {
  let parsed: ReturnType<typeof configFromOptions>;
  try {
    parsed = configFromOptions(o, () => parseInterrupts(readFileSync(`${o.proc}/interrupts`, 'latin1')));
  } catch (err) {
    io.err.write(`irqtrace: ${(err as Error).message}\n`);
    return 2;
  }
  let trace: TraceFile | undefined;
  try {
    if (o.output) trace = openTraceFile(o.output);
  } catch (err) {
    io.err.write(`irqtrace: --output: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    return await recordWith(o, parsed, io, trace?.writer);
  } finally {
    if (trace) {
      trace.close();
      io.err.write(`irqtrace: ${trace.writer.sections} sections written to ${o.output ?? ''} (Chrome trace-event format: open it in Perfetto's UI or chrome://tracing)\n`);
    }
  }
}

async function recordWith(o: RecordOptions, parsed: ReturnType<typeof configFromOptions>, io: Output, trace: TraceEventWriter | undefined): Promise<number> {
  const { cfg, backend: choice, durationMs } = parsed;
  if (o.agent !== false) {
    const given = o.given ?? [];
    const code = await readAgent(
      { socket: o.agentSocket ?? DEFAULT_AGENT_SOCKET, cfg, thresholdGiven: given.includes('threshold'), ignored: KERNEL_OPTIONS.filter((n) => given.includes(n)), json: o.json, ...(durationMs === undefined ? {} : { durationMs }), ...(trace ? { trace } : {}) },
      io,
    );
    if (code !== undefined) return code;
  }
  const view = new ViolationView(io, o.json, trace);
  const pipeline = new RecordPipeline({
    proc: procFs(o.proc),
    cgroups: new CgroupIndex(o.cgroupRoot),
    pods: new PodNames(o.podLogs),
    // The kernel side applied the threshold: every record is a violation to show.
    allRecords: true,
    // Open files and sockets are for the JSON output; the table has no room for them.
    enrich: o.json,
    onEvent: (event) => { view.show(event); },
    onError: (err) => { io.err.write(`irqtrace: ${String(err)}\n`); },
  });
  const symbols = pipeline.symbols;
  await symbols.refresh();

  let failure: Error | undefined;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const sink = {
    record(rec: SectionRecord) {
      pipeline.push(rec);
    },
    failed(err: Error) {
      failure = err;
      finish();
    },
  };

  const options = backendOptionsOf(o);
  let started;
  try {
    started = await startBackend(choice, cfg, sink, options);
  } catch (err) {
    io.err.write(`irqtrace: cannot trace: ${err instanceof BackendError ? err.message : String(err)}\n`);
    return 3;
  }
  const { backend, state } = started;
  if (state.reason) io.err.write(`irqtrace: ${state.reason}\n`);
  // The histograms at the end are this run's, also of a module that was loaded already
  // (nobody else reads it: /dev/irqtrace has one reader).
  await backend.clear();
  io.err.write(
    `irqtrace: tracing with ${state.backend} (irqs-off: ${state.method}, irq lines: ${Array.isArray(cfg.irqs) ? cfg.irqs.join(',') : cfg.irqs}), ` +
      `threshold ${formatNs(cfg.thresholdNs)}${durationMs === undefined ? '; Ctrl-C to stop' : `, for ${formatNs(BigInt(durationMs) * 1_000_000n)}`}\n`,
  );
  view.header();
  const began = Date.now();

  const stopProgress = view.progress();
  const refresher = setInterval(() => { symbols.refresh().catch(() => {}); }, 10_000);
  await untilStopped(finished, durationMs);
  stopProgress();
  clearInterval(refresher);

  let code = 0;
  try {
    const { hists, counters } = await backend.stats();
    await backend.stop();
    await pipeline.drained();
    for (const h of hists) {
      const samples = counters.find((c) => c.cpu === h.cpu && h.kind !== Kind.IrqLine)?.samples;
      if (o.json) {
        const line = histogramJson(h, samples);
        if (line) io.out.write(`${JSON.stringify(line)}\n`);
      } else {
        const text = formatHistogram(h, samples);
        if (text) io.out.write(`\n${text}\n`);
      }
    }
    const lostKernel = counters.reduce((a, c) => a + c.droppedRing + c.droppedGuard, 0n);
    io.err.write(`irqtrace: ${view.shown} violations shown; lost: ${lostKernel} in the kernel, ${pipeline.dropped} in irqtrace\n`);
    if (o.json) {
      const summary = summaryJson({ source: 'kernel', backend: state.backend, method: state.method, seconds: (Date.now() - began) / 1000, violationsShown: view.shown, lost: { kernel: String(lostKernel), irqtrace: String(pipeline.dropped) } });
      io.out.write(`${JSON.stringify(summary)}\n`);
    }
  } catch (err) {
    io.err.write(`irqtrace: stopping: ${String(err)}\n`);
    code = 1;
  }
  if (failure) {
    io.err.write(`irqtrace: the record stream failed: ${failure.message}\n`);
    code = 1;
  }
  return code;
}
