// `irqtrace record` on a machine whose node agent runs: the kernel side is the
// agent's (the module has one reader, and it is the agent), so read the
// agent's events from its local socket (daemon/local_watch.ts), as `tetra
// getevents` reads Tetragon's, rather than start a second kernel side.
import { existsSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { AgentLocalClient, irqtrace, toBigInt, toLong } from '@irqtrace/proto';
import { METHOD_NAMES } from '../config/kernel_config.js';
import type { KernelConfig } from '../config/kernel_config.js';
import { METHODS } from '../pipeline/event.js';
import { Method } from '../records/layout.js';
import { formatNs } from './format.js';
import type { Output } from './output.js';
import { untilStopped } from './until_stopped.js';
import { summaryJson } from './json_summary.js';
import type { TraceEventWriter } from './trace_events.js';
import { ViolationView } from './violation_view.js';

const pb = irqtrace.v1;

/** The methods' names by their wire value: METHOD_NAMES, through the one method mapping (METHODS). */
const METHOD_NAMES_ON_WIRE = new Map(Object.values(Method).filter((m): m is Method => typeof m === 'number').map((m) => [METHODS[m], METHOD_NAMES[m]]));

/** How long the agent has to say who it is before this command traces by itself. */
const ANSWER_TIMEOUT_MS = 5000;

export interface AgentReadOptions {
  socket: string;
  /** The command's kernel config: its target picks the events; its threshold too, if given. */
  cfg: KernelConfig;
  thresholdGiven: boolean;
  /** Options that choose a kernel side, given on the command line: the agent's are used instead. */
  ignored: string[];
  json: boolean;
  durationMs?: number;
  /** --output: the events also go to this trace-event file. */
  trace?: TraceEventWriter;
}

/** Whether the command's target wants this event. */
export function targetWants(cfg: KernelConfig, event: irqtrace.v1.IEvent): boolean {
  if (event.kind === pb.SectionKind.SECTION_KIND_IRQ_LINE) return cfg.irqs === 'all' || (Array.isArray(cfg.irqs) && cfg.irqs.includes(event.irq ?? -1));
  return cfg.method !== 'off';
}

function describe(info: irqtrace.v1.IAgentInfo): string {
  const state = info.state ?? {};
  const backend = state.backend === pb.Backend.BACKEND_KMOD ? 'kmod' : state.backend === pb.Backend.BACKEND_EBPF ? 'eBPF' : 'no kernel side';
  const method = METHOD_NAMES_ON_WIRE.get(state.irqsOffMethod ?? pb.Method.METHOD_UNSPECIFIED) ?? 'off';
  const traces = (info.traces ?? []).map((t) => `${t.name} (${formatNs(toBigInt(t.thresholdNs))})`);
  return `node ${info.node ?? '?'}, pid ${info.pid ?? '?'}: ${backend}, irqs-off ${method}; traces: ${traces.length ? traces.join(', ') : 'none (nothing is traced)'}`;
}

/**
 * Shows the agent's events until the duration, Ctrl-C or the agent's end. undefined: no agent
 * answers on the socket (none there, or one that is gone), for the caller to trace by itself.
 */
export async function readAgent(o: AgentReadOptions, io: Output): Promise<number | undefined> {
  if (!existsSync(o.socket)) return undefined;
  const client = new AgentLocalClient(`unix:${o.socket}`, grpc.credentials.createInsecure());
  const call = client.watch({ minDurationNs: toLong(o.thresholdGiven ? o.cfg.thresholdNs : 0n) });
  const view = new ViolationView(io, o.json, o.trace);
  let lost = 0n;
  let failure: Error | undefined;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const info = await new Promise<irqtrace.v1.IAgentInfo | Error>((resolve) => {
    const timer = setTimeout(() => { resolve(new Error(`no answer in ${ANSWER_TIMEOUT_MS / 1000} s`)); }, ANSWER_TIMEOUT_MS);
    call.once('data', (m: irqtrace.v1.WatchMessage) => {
      // Held until the events' handler is on (the next messages may come in this same tick).
      call.pause();
      clearTimeout(timer);
      resolve(m.agent ?? new Error('the agent did not say who it is'));
    });
    call.once('error', (err: Error) => { clearTimeout(timer); resolve(err); });
  });
  if (info instanceof Error) {
    call.cancel();
    client.close();
    io.err.write(`irqtrace: no node agent answers on ${o.socket} (${info.message}): tracing here\n`);
    return undefined;
  }

  io.err.write(`irqtrace: the node agent runs the kernel side here; showing its events (${describe(info)})\n`);
  if (o.ignored.length) io.err.write(`irqtrace: ${o.ignored.map((n) => `--${n}`).join(', ')}: the agent's traces choose these; ignored\n`);
  const lowest = (info.traces ?? []).reduce<bigint | undefined>((low, t) => (low === undefined || toBigInt(t.thresholdNs) < low ? toBigInt(t.thresholdNs) : low), undefined);
  if (o.thresholdGiven && lowest !== undefined && o.cfg.thresholdNs < lowest) {
    io.err.write(`irqtrace: the agent records sections of ${formatNs(lowest)} and longer: shorter ones are not seen\n`);
  }
  io.err.write(o.durationMs === undefined ? 'irqtrace: Ctrl-C to stop\n' : `irqtrace: for ${formatNs(BigInt(o.durationMs) * 1_000_000n)}\n`);
  view.header();

  call.on('data', (m: irqtrace.v1.WatchMessage) => {
    if (m.event && targetWants(o.cfg, m.event)) view.show(m.event);
    if (m.loss) lost += toBigInt(m.loss.count);
  });
  call.on('error', (err: grpc.ServiceError) => {
    if (err.code !== grpc.status.CANCELLED) failure = err;
    finish();
  });
  call.on('end', () => {
    failure ??= new Error('the agent ended the stream (it stopped)');
    finish();
  });
  call.resume();
  const began = Date.now();
  const stopProgress = view.progress();
  await untilStopped(finished, o.durationMs);
  stopProgress();
  call.removeAllListeners('end');
  call.removeAllListeners('error');
  call.on('error', () => {});
  call.cancel();
  client.close();

  const why = lost ? ' (it read slower than the agent made them)' : '';
  io.err.write(`irqtrace: ${view.shown} violations shown; lost: ${lost} by this reader${why}\n`);
  // The agent's histograms are its own (they go to the cluster): only the summary here.
  if (o.json) io.out.write(`${JSON.stringify(summaryJson({ source: 'agent', seconds: (Date.now() - began) / 1000, violationsShown: view.shown, lost: { reader: String(lost) } }))}\n`);
  if (failure) {
    io.err.write(`irqtrace: the agent's stream failed: ${failure.message}\n`);
    return 1;
  }
  return 0;
}
