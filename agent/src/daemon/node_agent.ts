// The node agent: runs the kernel side for the traces this node is given
// (by the ingest, or by the local config file), turns records into events
// for those traces, and ships them (gRPC batches, or the local store). The
// backend failing to start is a state to report and retry, not a crash.
import { release, version } from 'node:os';
import { PROTOCOL_VERSION, irqtrace, toLong } from '@irqtrace/proto';
import type { Logger as Pino } from 'pino';
import { CgroupIndex } from '../attribution/cgroup_index.js';
import { PodNames } from '../attribution/pod_names.js';
import { procFs } from '../attribution/procfs.js';
import { unloadLeftover } from '../backend/kmod.js';
import { startBackend } from '../backend/select.js';
import type { BackendOptions } from '../backend/select.js';
import type { KernelBackend } from '../backend/types.js';
import { methodNamed } from '../config/kernel_config.js';
import { mergeTraces, resolveTraceIrqNames, traceFromProto, traceToProto } from '../config/traces.js';
import { parseInterrupts } from '../config/irq_names.js';
import type { Merged, Trace } from '../config/traces.js';
import { AGENT_LOSSES, Batcher } from '../pipeline/batcher.js';
import { METHODS, SECTION_KINDS } from '../pipeline/event.js';
import { RecordPipeline } from '../pipeline/record_pipeline.js';
import type { CountersItem, SectionRecord } from '../records/decode.js';
import { IngestClient } from '../transport/client.js';
import type { TlsOptions } from '../transport/client.js';
import { Outbox } from '../transport/outbox.js';
import { bootId, probeCapabilities } from './capabilities.js';
import { LocalWatchServer } from './local_watch.js';
import type { AgentMetrics } from './metrics.js';
import type { EventStore } from './store.js';

const pb = irqtrace.v1;
/** A refused unload is tried again this often: rmmod is cheap, and a deleted trace waits on it. */
const UNLOAD_RETRY_MS = 10_000;
const Phase = pb.BackendState.Phase;
type Phase = irqtrace.v1.BackendState.Phase;

export interface NodeAgentOptions {
  node: string;
  log: Pino;
  metrics: AgentMetrics;
  ingest?: { address: string; tls?: TlsOptions };
  /** Traces from the local config file (no ingest). */
  traces?: Trace[];
  store?: EventStore;
  spoolDir?: string;
  spoolMaxBytes?: number;
  backend?: BackendOptions;
  proc?: string;
  cgroupRoot?: string;
  snapshotMs?: number;
  retryMs?: number;
  enrich?: boolean;
  /** The kubelet's pod log root, to name pods (attribution/pod_names.ts). */
  podLogs?: string;
  /** Serve the events to local readers on this unix socket (daemon/local_watch.ts). */
  localSocket?: string;
}

export class NodeAgent {
  private backend: KernelBackend | undefined;
  /**
   * Backends whose stop failed (their kernel side still there, a module left idle): stopped again
   * at every stop, after the running one (which may have adopted their module), until they are.
   */
  private unstopped: KernelBackend[] = [];
  private running: Merged | undefined;
  private traces: Trace[] = [];
  private configVersion = 0n;
  /** A configuration from the ingest was applied (whatever its outcome). */
  private configured = false;
  private phase: Phase = Phase.PHASE_IDLE;
  private method = 'off';
  private reason = '';
  private readonly outbox: Outbox;
  private readonly batcher: Batcher;
  private client: IngestClient | undefined;
  private readonly pipeline: RecordPipeline;
  private changes: Promise<void> = Promise.resolve();
  private lastCounters = new Map<number, CountersItem>();
  private timers: NodeJS.Timeout[] = [];
  private retry: NodeJS.Timeout | undefined;
  /**
   * The periodic snapshot under way: it holds /dev/irqtrace_stats open while it reads, and rmmod
   * refuses a module in use, so a stop waits for it (else a spurious "unloading: ... in use").
   */
  private snapshotting: Promise<void> = Promise.resolve();
  private local: LocalWatchServer | undefined;

  constructor(private readonly o: NodeAgentOptions) {
    this.pipeline = new RecordPipeline({
      proc: procFs(o.proc),
      cgroups: new CgroupIndex(o.cgroupRoot),
      ...(o.podLogs ? { pods: new PodNames(o.podLogs) } : {}),
      ...(o.enrich === undefined ? {} : { enrich: o.enrich }),
      counters: o.metrics.pipelineCounters(),
      onEvent: (event, rec) => {
        this.local?.publish(event, rec.durationNs);
        if (this.o.store) this.o.store.append(pb.Event.toObject(pb.Event.fromObject(event), { longs: String, enums: String }));
        if (this.client) this.batcher.add(event);
      },
      onError: (err) => { this.o.log.warn({ err: String(err) }, 'event dropped'); },
    });
    this.outbox = new Outbox({ ...(o.spoolDir ? { dir: o.spoolDir } : {}), ...(o.spoolMaxBytes ? { maxBytes: o.spoolMaxBytes } : {}) });
    this.batcher = new Batcher(this.outbox, { onBatch: () => { this.client?.pump(); }, onLoss: (stage, count, reason) => { o.metrics.countLoss(stage, count, reason); } });
    this.o.metrics.unackedBatches = () => this.outbox.size;
  }

  /** Backend state as the protocol says it. */
  state(): irqtrace.v1.IBackendState {
    const running = methodNamed(this.method);
    const method = running === undefined ? pb.Method.METHOD_UNSPECIFIED : METHODS[running];
    return {
      phase: this.phase,
      backend: this.backend?.name === 'kmod' ? pb.Backend.BACKEND_KMOD : this.backend?.name === 'ebpf' ? pb.Backend.BACKEND_EBPF : pb.Backend.BACKEND_UNSPECIFIED,
      irqsOffMethod: method,
      softirqsOff: this.running?.kernel.softirqs ?? false,
      irqLines: (this.running?.kernel.irqs ?? 'none') !== 'none',
      reason: this.reason,
      configVersion: toLong(this.configVersion),
    };
  }

  /**
   * Ready: doing what the ingest last asked (or, without an ingest, running). Not while the
   * ingest is away once configured: the agent keeps tracing and keeps what it records until the
   * ingest is back, and a DaemonSet replaces every unready pod at once, so an operator restart
   * (every helm upgrade) would make a rollout take all nodes' agents down together.
   */
  ready(): { ok: boolean; why: string } {
    if (this.phase === Phase.PHASE_FAILED) return { ok: false, why: `backend failed: ${this.reason}` };
    if (this.o.ingest && !this.configured) return { ok: false, why: 'waiting for its first configuration from the ingest' };
    return { ok: true, why: '' };
  }

  async start(): Promise<void> {
    await this.pipeline.symbols.refresh();
    if (this.o.localSocket) await this.serveLocal(this.o.localSocket);
    if (this.o.ingest) {
      const boot = await bootId(this.o.proc);
      const capabilities = await probeCapabilities(this.o.proc);
      this.client = new IngestClient({
        address: this.o.ingest.address,
        ...(this.o.ingest.tls ? { tls: this.o.ingest.tls } : {}),
        outbox: this.outbox,
        hello: () => ({
          node: this.o.node,
          bootId: boot,
          kernelRelease: release(),
          kernelVersion: version(),
          agentVersion: '0.1.0',
          capabilities,
          lastAckedSeq: toLong(this.outbox.ackedSeq),
          protocolVersion: PROTOCOL_VERSION,
        }),
        onConfig: (config) => {
          void this.applyTraces((config.traces ?? []).map((t) => traceFromProto(t)), BigInt(config.version?.toString() ?? '0'));
        },
        log: this.o.log,
      });
      this.client.start();
    } else {
      await this.applyTraces(this.o.traces ?? []);
    }
    this.timers.push(setInterval(() => { this.snapshotting = this.snapshot(); }, this.o.snapshotMs ?? 10_000));
    this.timers.push(setInterval(() => { this.pipeline.symbols.refresh().catch(() => {}); }, 10_000));
    this.timers.push(setInterval(() => { this.o.metrics.connected.set(this.client?.connected ? 1 : 0); }, 1000));
  }

  /** Local readers are a convenience: an agent that cannot serve them still traces. */
  private async serveLocal(socket: string): Promise<void> {
    const local = new LocalWatchServer({
      socket,
      log: this.o.log,
      info: () => ({ node: this.o.node, pid: process.pid, state: this.state(), traces: this.traces.map(traceToProto) }),
    });
    try {
      await local.start();
      this.local = local;
    } catch (err) {
      this.o.log.warn({ err: String(err), socket }, 'no local event stream: `irqtrace record` cannot read this agent');
      await local.stop().catch(() => {});
    }
  }

  /**
   * Changes are applied one at a time, in order. version is the ingest's name for this config:
   * the state says it (config_version) only once the kernel side runs it, so that a deleted
   * trace's finalizer waits for the unload itself.
   */
  applyTraces(traces: Trace[], version = this.configVersion): Promise<void> {
    this.changes = this.changes.then(() => this.reconfigure(traces, version)).catch((err: unknown) => {
      this.o.log.error({ err }, 'reconfiguring failed');
    });
    return this.changes;
  }

  /** IRQ names as this node's /proc/interrupts has them now; a name with no line is logged, not fatal. */
  private async resolveIrqNames(traces: Trace[]): Promise<Trace[]> {
    if (!traces.some((t) => t.irqNames?.length)) return traces;
    const text = (await this.pipeline.proc.read('interrupts')) ?? '';
    const { traces: resolved, unmatched } = resolveTraceIrqNames(traces, parseInterrupts(text));
    if (unmatched.length) this.o.log.warn({ unmatched }, 'IRQ names match no line in /proc/interrupts; not traced until the trace changes');
    return resolved;
  }

  private setPhase(phase: Phase, reason: string): void {
    this.phase = phase;
    this.reason = reason;
    const name = Object.entries(Phase).find(([, v]) => v === phase)?.[0]?.replace('PHASE_', '').toLowerCase() ?? 'unknown';
    this.o.metrics.setBackend(this.backend?.name ?? 'none', this.method, name);
    this.client?.sendState(this.state());
    this.o.log.info({ phase: name, backend: this.backend?.name ?? 'none', method: this.method, reason }, 'backend state');
  }

  private async reconfigure(wanted: Trace[], version: bigint): Promise<void> {
    clearTimeout(this.retry);
    // The config is applied (whatever the outcome, nothing of the previous one runs beside it).
    const applied = (phase: Phase, reason: string): void => {
      this.configVersion = version;
      this.configured = true;
      this.setPhase(phase, reason);
    };
    const traces = await this.resolveIrqNames(wanted);
    this.traces = traces;
    this.pipeline.setTraces(traces);
    const merged = mergeTraces(traces);
    if (!merged) {
      // No trace for this node: nothing stays loaded. Until that is so (rmmod refused: the module
      // in use), the state says why and keeps the version the kernel side still runs: a deleted
      // trace's finalizer waits, naming the node and the error. Tried again soon.
      const failure = (await this.stopBackend()) ?? (await this.unloadLeftover());
      if (failure) {
        // Nothing is measured meanwhile (the backend left it idle before it tried).
        this.running = undefined;
        this.method = 'off';
        this.setPhase(Phase.PHASE_FAILED, `unloading: ${failure}`);
        this.retry = setTimeout(() => { void this.applyTraces(this.traces, version); }, Math.min(UNLOAD_RETRY_MS, this.o.retryMs ?? UNLOAD_RETRY_MS));
        return;
      }
      this.running = undefined;
      this.method = 'off';
      applied(Phase.PHASE_IDLE, '');
      return;
    }
    if (this.backend && this.running && this.phase === Phase.PHASE_RUNNING && merged.backend === this.running.backend) {
      try {
        await this.backend.apply(merged.kernel);
        this.running = merged;
        this.method = await this.backend.method();
        // Still the backend it fell back to, for the same reason: the node's status keeps saying why.
        applied(Phase.PHASE_RUNNING, this.reason);
        return;
      } catch (err) {
        this.o.log.warn({ err: String(err) }, 'run-time change refused; restarting the backend');
      }
    }
    await this.stopBackend();
    this.setPhase(Phase.PHASE_STARTING, '');
    try {
      const started = await startBackend(merged.backend, merged.kernel, { record: (r) => { this.onRecord(r); }, failed: (e) => { this.onFailed(e); } }, this.o.backend);
      this.backend = started.backend;
      this.running = merged;
      this.method = started.state.method;
      applied(Phase.PHASE_RUNNING, started.state.reason);
    } catch (err) {
      this.backend = undefined;
      this.method = 'off';
      applied(Phase.PHASE_FAILED, err instanceof Error ? err.message : String(err));
      this.retry = setTimeout(() => { void this.applyTraces(this.traces); }, this.o.retryMs ?? 60_000);
    }
  }

  /** Stops the kernel side (and whatever a failed stop left); returns why it could not (then kept, to be stopped again). */
  private async stopBackend(): Promise<string | undefined> {
    const backend = this.backend;
    this.backend = undefined;
    await this.snapshotting;
    if (backend) await this.snapshot(backend);
    const stops = backend ? [backend, ...this.unstopped] : this.unstopped;
    this.unstopped = [];
    let failure: string | undefined;
    for (const b of stops) {
      try {
        await b.stop();
      } catch (err) {
        this.unstopped.push(b);
        const why = err instanceof Error ? err.message : String(err);
        this.o.log.warn({ err: why }, 'stopping the backend failed; its kernel side is still there');
        failure ??= why;
      }
    }
    return failure;
  }

  /** With no trace and nothing of its own running: a module a killed agent of this pod left, unloaded; returns why it could not. */
  private async unloadLeftover(): Promise<string | undefined> {
    try {
      if (await unloadLeftover(this.o.backend?.kmod)) this.o.log.info({}, 'unloaded the module a killed agent left loaded');
      return undefined;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }

  private onFailed(err: Error): void {
    this.o.log.error({ err: err.message }, 'the record stream failed');
    this.setPhase(Phase.PHASE_FAILED, `record stream: ${err.message}`);
    this.retry = setTimeout(() => { void this.applyTraces(this.traces); }, this.o.retryMs ?? 60_000);
  }

  private onRecord(rec: SectionRecord): void {
    if (!this.pipeline.push(rec)) this.batcher.loss(pb.LossStage.LOSS_STAGE_AGENT_QUEUE, 1, AGENT_LOSSES.attribution.reason, rec.cpu);
  }

  /** Histograms and the kernel's drop counters, into the next batch and the metrics. */
  private async snapshot(backend = this.backend): Promise<void> {
    if (!backend) return;
    try {
      const { counters, hists } = await backend.stats();
      for (const c of counters) {
        const last = this.lastCounters.get(c.cpu);
        const ring = c.droppedRing - (last?.droppedRing ?? 0n);
        const guard = c.droppedGuard - (last?.droppedGuard ?? 0n);
        if (ring > 0n) {
          this.batcher.loss(pb.LossStage.LOSS_STAGE_KERNEL_RING, ring, 'kernel ring full', c.cpu);
        }
        if (guard > 0n) {
          this.batcher.loss(pb.LossStage.LOSS_STAGE_KERNEL_GUARD, guard, 'probe re-entered', c.cpu);
        }
        this.lastCounters.set(c.cpu, c);
        this.o.metrics.kernelSeen.set({ cpu: String(c.cpu) }, Number(c.seen));
        this.o.metrics.kernelIdleExcluded.set({ cpu: String(c.cpu) }, Number(c.idleExcluded));
      }
      this.o.metrics.kernelDurations.update(hists);
      if (this.client) {
        this.batcher.snapshot(
          {
            takenNs: toLong(process.hrtime.bigint()),
            histograms: hists
              .filter((h) => h.count > 0n)
              .map((h) => ({
                kind: SECTION_KINDS[h.kind],
                cpu: h.cpu,
                irq: h.irq,
                buckets: h.buckets.map((b) => toLong(b)),
                count: toLong(h.count),
                sumNs: toLong(h.sumNs),
                maxNs: toLong(h.maxNs),
              })),
          },
          this.state(),
        );
      }
    } catch (err) {
      this.o.log.warn({ err: String(err) }, 'reading the kernel statistics');
    }
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.retry);
    await this.changes;
    const failure = await this.stopBackend();
    await this.pipeline.drained();
    this.batcher.stop();
    // IDLE says nothing of the kernel side runs: a deleted trace need not wait for this node.
    if (failure) this.setPhase(Phase.PHASE_FAILED, `agent stopped; unloading: ${failure}`);
    else this.setPhase(Phase.PHASE_IDLE, 'agent stopped');
    // Give the last batches a moment to reach the ingest; what is left stays in the spool.
    const deadline = Date.now() + 3000;
    while (this.client?.connected && this.outbox.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await this.client?.stop();
    await this.local?.stop();
  }
}

