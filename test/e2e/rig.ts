// The whole of irqtrace on this machine, for the end-to-end test and the demo:
// a real control plane (etcd + kube-apiserver, optionally the controller
// manager), nats-server with JetStream, the built `irqtrace-operator` as
// processes (all roles in one, or the ingest apart so each can be restarted),
// and QEMU guests as nodes: a Node object per guest, the agent running inside
// it (the host's node and the built agent over 9p) and reaching the ingest
// through an ssh forward, the way a DaemonSet pod would reach the Service.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { irqtrace, toBigInt } from '@irqtrace/proto';
import type { IrqTraceStatus, Violation } from '@irqtrace/operator';
import { agentCli, operatorMain, scratchDir } from '../lib/paths.js';
import { freePort } from '../lib/ports.js';
import { Service } from '../lib/process.js';
import { waitUntil } from '../lib/wait.js';
import { installIrqTraceApi } from '../lib/irqtrace_api.js';
import { startCluster } from '../cluster/cluster.js';
import type { Cluster } from '../cluster/cluster.js';
import { startNats } from '../nats/nats.js';
import type { Nats } from '../nats/nats.js';
import { Vm } from '../vm/vm.js';
import type { Flavour } from '../vm/vm.js';
import { Rig, must } from '../../kmod/test/harness.js';
import type { Report } from '../../kmod/test/harness.js';
import { buildBpfLoader } from '../../kmod/test/bpf_loader.js';
import { STREAM } from '../../operator/src/ingest/subjects.js';

/** Where the agent keeps its spool, log and pid in a guest (writable tmpfs). */
const AGENT_DIR = '/run/tmp/irqtrace-agent';
const AGENT_METRICS_PORT = 9400;

export type Say = (line: string) => void;

export interface PlaneOptions {
  /** kube-controller-manager too (garbage collection); the demo runs it, the test need not. */
  controllerManager?: boolean;
  /** The ingest in a process of its own, so that it and the rest can be restarted apart. */
  separateIngest?: boolean;
  say?: Say;
}

type Role = 'controller' | 'ingest' | 'status';

/** One `irqtrace-operator run` process with some roles; restartable on the same ports. */
class OperatorProcess {
  private service?: Service;

  constructor(
    readonly name: string,
    private readonly configPath: string,
    private readonly kubeconfigPath: string,
    private readonly logPath: string,
    private readonly ready: RegExp,
  ) {}

  async start(): Promise<void> {
    this.service = new Service(this.name, process.execPath, [operatorMain, 'run', '--config', this.configPath, '--kubeconfig', this.kubeconfigPath], this.logPath, {
      env: { ...process.env, LOG_LEVEL: 'info' },
    });
    await this.service.waitForOutput(this.ready, 60_000);
  }

  /** SIGKILL: nothing flushed, the way a crash or an OOM kill ends it. */
  async kill(): Promise<void> {
    this.service?.child.kill('SIGKILL');
    await this.service?.exit();
  }

  async stop(): Promise<void> {
    await this.service?.stop();
  }

  get log(): string {
    return this.service?.tail ?? '';
  }
}

export class ControlPlane {
  private readonly nodes: GuestNode[] = [];

  private constructor(
    readonly cluster: Cluster,
    readonly nats: Nats,
    readonly ingestPort: number,
    readonly work: string,
    /** 'operator' (controller + status, and ingest unless apart) and, apart, 'ingest'. */
    readonly processes: Map<string, OperatorProcess>,
    readonly say: Say,
  ) {}

  static async start(o: PlaneOptions = {}): Promise<ControlPlane> {
    if (!existsSync(agentCli) || !existsSync(operatorMain)) throw new Error('the agent and the operator are not built: run npm run build');
    const say = o.say ?? (() => {});
    say('starting etcd + kube-apiserver' + (o.controllerManager ? ' + kube-controller-manager' : '') + ' and nats-server (JetStream) on 127.0.0.1');
    const [cluster, nats] = await Promise.all([startCluster({ controllerManager: o.controllerManager ?? false }), startNats()]);
    const work = scratchDir('e2e');
    const processes = new Map<string, OperatorProcess>();
    const plane = new ControlPlane(cluster, nats, await freePort(), work, processes, say);
    try {
      say('installing the IrqTrace CRD (generated from the operator\'s schema)');
      await installIrqTraceApi(cluster);
      const groups: [string, Role[]][] = o.separateIngest
        ? [['ingest', ['ingest']], ['operator', ['controller', 'status']]]
        : [['operator', ['controller', 'ingest', 'status']]];
      for (const [name, roles] of groups) {
        const config = join(work, `${name}.yaml`);
        writeFileSync(
          config,
          [
            `roles: [${roles.join(', ')}]`,
            'leaderElection: {enabled: false}',
            `nats: {servers: ["${nats.url}"], maxAgeHours: 1, maxBytes: 268435456}`,
            `ingest: {listen: "127.0.0.1:${plane.ingestPort}"}`,
            `metrics: {listen: "127.0.0.1:${await freePort()}"}`,
            'statusIntervalMs: 500',
            '',
          ].join('\n'),
        );
        const p = new OperatorProcess(`irqtrace-operator ${name}`, config, cluster.kubeconfigPath, join(work, `${name}.log`), /operator running/);
        say(`starting irqtrace-operator (${roles.join(' + ')})`);
        await p.start();
        processes.set(name, p);
      }
    } catch (err) {
      await plane.stop();
      throw err;
    }
    return plane;
  }

  /** Kills a process (SIGKILL) and starts it again with the same config and ports. */
  async restart(name: 'ingest' | 'operator'): Promise<void> {
    const p = this.processes.get(name);
    if (!p) throw new Error(`no operator process ${name}`);
    await p.kill();
    await p.start();
  }

  processLog(name: string): string {
    return this.processes.get(name)?.log ?? '';
  }

  async kubectl(args: readonly string[], input?: string): Promise<string> {
    const r = await this.cluster.kubectl(args, input);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  async status(trace: string): Promise<IrqTraceStatus | undefined> {
    const r = await this.cluster.kubectl(['get', 'irqtrace', trace, '-o', 'jsonpath={.status}']);
    return r.code === 0 && r.stdout ? (JSON.parse(r.stdout) as IrqTraceStatus) : undefined;
  }

  /** Boots a guest as node `name`, with its Node object, the selftest loaded and the agent ready to start. */
  async addNode(options: NodeOptions): Promise<GuestNode> {
    this.say(`booting ${options.name}: ${options.flavour === 'tracing' ? "the project's tracing kernel" : "Debian's stock kernel"} under QEMU (TCG), agent backend ${options.backend}`);
    const node = await GuestNode.boot(this, options);
    this.nodes.push(node);
    return node;
  }

  /** Stops guests (and their agents), the operator processes, NATS and the cluster: nothing is left running. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.splice(0).map((n) => n.vm.stop().catch(() => {})));
    for (const p of [...this.processes.values()].reverse()) await p.stop();
    await Promise.all([this.cluster.stop(), this.nats.stop()]);
  }
}

export interface NodeOptions {
  name: string;
  flavour: Flavour;
  /** What the agent is given: the module (kmod, it may still choose eBPF) or only the eBPF loader. */
  backend: 'kmod' | 'ebpf';
  labels?: Record<string, string>;
}

export interface AgentMetrics {
  /** Events the agent put into batches for the ingest, by kind, and in all. */
  batched: Record<string, number>;
  batchedTotal: number;
  /** Sections or events lost, in all and by stage (kernel_ring, agent_attribution, ...). */
  dropped: number;
  droppedByStage: Record<string, number>;
  unacked: number;
  connected: boolean;
  /** backend/method/phase in effect, e.g. kmod/exact/running. */
  backend: string;
  /** Sections the kernel side left out as the idle loop's, by CPU. */
  idleExcluded: number[];
  /** irqtrace_kernel_section_duration_seconds{kind="irqs-off"}: cumulative count by upper bound (s), +Inf last. */
  kernelIrqsOff: [number, number][];
}

/** A QEMU guest playing a Kubernetes node, with the agent (as its DaemonSet pod would run it). */
export class GuestNode {
  private constructor(
    readonly plane: ControlPlane,
    readonly name: string,
    readonly vm: Vm,
    readonly rig: Rig,
    readonly backend: 'kmod' | 'ebpf',
    /** The IRQ line of the guest's serial port (ttyS0), which the selftest masks. */
    readonly serialLine: number,
    private readonly agentArgs: string,
  ) {}

  static async boot(plane: ControlPlane, o: NodeOptions): Promise<GuestNode> {
    // Single-threaded TCG: the agents patch kernel text (ftrace ops, kprobes) while the guests run,
    // which the test/vm notes say multi-threaded TCG does not always survive; two guests on 2 cores
    // also run faster this way (e2e 81-86 s, not 115-120 s).
    const vm = await Vm.boot({ flavour: o.flavour, memoryMb: 2048 });
    try {
      const rig = await Rig.create(vm);
      const line = Number(/^\s*(\d+):.*\bttyS0\b/m.exec(await vm.run('cat /proc/interrupts'))?.[1]);
      if (!line) throw new Error(`${o.name}: no ttyS0 line in /proc/interrupts`);
      const labels = Object.entries({ 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': o.name, ...o.labels }).map(([k, v]) => `    ${k}: "${v}"`);
      await plane.kubectl(['apply', '-f', '-'], `apiVersion: v1\nkind: Node\nmetadata:\n  name: ${o.name}\n  labels:\n${labels.join('\n')}\n`);
      const port = await vm.forwardToHost(plane.ingestPort);
      const kernelSide = o.backend === 'kmod' ? `--module ${rig.modules.irqtrace}` : `--loader ${await buildBpfLoader()}`;
      const args = `agent --ingest 127.0.0.1:${port} --node ${o.name} ${kernelSide} --spool ${AGENT_DIR}/spool --metrics-port ${AGENT_METRICS_PORT}`;
      return new GuestNode(plane, o.name, vm, rig, o.backend, line, args);
    } catch (err) {
      await vm.stop();
      throw err;
    }
  }

  /** Starts the agent in the background of the guest; its log goes to AGENT_DIR/log. */
  async startAgent(): Promise<void> {
    await this.vm.execHost(
      `mkdir -p ${AGENT_DIR}; (NODE_NAME=${this.name} node ${agentCli} ${this.agentArgs} >> ${AGENT_DIR}/log 2>&1 & echo $! > ${AGENT_DIR}/pid; wait $!) > /dev/null 2>&1 &`,
    );
    await waitUntil(`${this.name}: the agent serving metrics`, 180_000, async () => (await this.metricsText()) !== undefined, 1000);
  }

  /** SIGTERM, as the kubelet stops a pod: the agent unloads what it loaded and exits. */
  async stopAgent(): Promise<void> {
    await this.vm.execHost(`pid=$(cat ${AGENT_DIR}/pid); kill -TERM $pid; while kill -0 $pid 2>/dev/null; do sleep 0.2; done`, { timeoutMs: 180_000 });
  }

  async agentRunning(): Promise<boolean> {
    return (await this.vm.execHost(`kill -0 $(cat ${AGENT_DIR}/pid)`)).code === 0;
  }

  async agentLog(): Promise<string> {
    return (await this.vm.execHost(`cat ${AGENT_DIR}/log`)).stdout;
  }

  async moduleLoaded(): Promise<boolean> {
    return (await this.vm.exec('test -d /sys/module/irqtrace')).code === 0;
  }

  /** Until the agent's backend runs, i.e. a trace has reached it. */
  async waitTracing(): Promise<void> {
    await waitUntil(`${this.name}: tracing`, 240_000, async () => (await this.metrics()).backend.endsWith('/running'), 1000);
  }

  /**
   * The workload of the demo and the end-to-end test: ordinary load, and the selftest holding
   * interrupts off on CPU 0 for 80 ms, then masking the serial line for 30 ms (longer under TCG: the
   * enabling kworker runs late) — each longer than what the guests do by themselves.
   */
  async provoke(): Promise<{ irqsOff: Report; line: Report }> {
    await this.busy(20);
    const [irqsOff, line] = await this.rig.irqburn('irqoff 80000 0', `irqline ${this.serialLine} 30000 1`);
    return { irqsOff: must(irqsOff), line: must(line) };
  }

  /**
   * A 60 ms hrtimer callback on CPU 1 (idle meanwhile): a section of interrupt code, not of the
   * idle loop. An empty timer runs right after it, as the tick does when it fell due meanwhile
   * (the sampled node named the tick, or nobody, when it did: one e2e run in CI).
   */
  async provokeTimer(): Promise<Report> {
    const report = must((await this.rig.irqburn('hardirq 60000 1 1'))[0]);
    if (report.fields.tail !== '1') throw new Error(`${this.name}: the selftest's tail timer did not run: ${JSON.stringify(report.fields)}`);
    return report;
  }

  /**
   * Ordinary load next to the selftest, in the background for about `seconds`:
   * file reads over 9p (virtio interrupts), compression, forks.
   */
  private async busy(seconds: number): Promise<void> {
    await this.vm.exec(
      `(end=$(($(date +%s) + ${seconds})); while [ $(date +%s) -lt $end ]; do find /hostroot/usr/share/doc -type f 2>/dev/null | head -n 300 | xargs cat 2>/dev/null | gzip > /dev/null; done) > /dev/null 2>&1 &`,
    );
  }

  /** The eBPF loader's process, if one runs. */
  async loaderRunning(): Promise<boolean> {
    return (await this.vm.exec('pidof irqtrace-bpf')).code === 0;
  }

  private async metricsText(): Promise<string | undefined> {
    const r = await this.vm.exec(`wget -qO- http://127.0.0.1:${AGENT_METRICS_PORT}/metrics`, { timeoutMs: 30_000 });
    return r.code === 0 ? r.stdout : undefined;
  }

  async metrics(): Promise<AgentMetrics> {
    const text = await this.metricsText();
    if (text === undefined) throw new Error(`${this.name}: the agent's /metrics does not answer`);
    const batched: Record<string, number> = {};
    for (const m of text.matchAll(/^irqtrace_sections_total\{kind="([\w-]+)",stage="batched"\} (\d+)/gm)) batched[m[1] ?? ''] = Number(m[2]);
    const droppedByStage: Record<string, number> = {};
    for (const m of text.matchAll(/^irqtrace_dropped_total\{stage="([\w-]+)"\} (\d+)/gm)) droppedByStage[m[1] ?? ''] = Number(m[2]);
    const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 'NaN');
    const info = /^irqtrace_backend_info\{backend="([\w-]+)",method="([\w-]+)",phase="([\w-]+)"\} 1$/m.exec(text);
    return {
      batched,
      batchedTotal: Object.values(batched).reduce((a, b) => a + b, 0),
      dropped: Object.values(droppedByStage).reduce((a, b) => a + b, 0),
      droppedByStage,
      unacked: gauge('irqtrace_unacked_batches'),
      connected: gauge('irqtrace_ingest_connected') === 1,
      backend: info ? `${info[1]}/${info[2]}/${info[3]}` : 'none',
      idleExcluded: [...text.matchAll(/^irqtrace_kernel_idle_excluded\{cpu="\d+"\} (\d+)/gm)].map((m) => Number(m[1])),
      kernelIrqsOff: [...text.matchAll(/^irqtrace_kernel_section_duration_seconds_bucket\{le="([^"]+)",kind="irqs-off"\} (\d+)/gm)].map((m) => [m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]),
    };
  }
}

export interface StreamSection {
  trace: string;
  node: string;
  kind: number;
  pid: number;
  startNs: bigint;
  durationNs: number;
  /** The interrupt code it belongs to (Event.context's summary); absent: a task's. */
  context?: string;
}

export interface StreamTally {
  sections: StreamSection[];
  /** Events per trace, and per trace and node, as published to JetStream. */
  events: Map<string, number>;
  byNode: Map<string, number>;
  /** Messages whose node/boot/seq/trace was already seen: a batch published twice. */
  duplicates: number;
  messages: number;
}

/** Reads every events message in the IRQTRACE stream: what the ingest published, batch by batch. */
export async function tallyStream(natsUrl: string): Promise<StreamTally> {
  const nc = await connect({ servers: natsUrl });
  try {
    const js = jetstream(nc);
    await (await jetstreamManager(nc)).streams.info(STREAM);
    const tally: StreamTally = { sections: [], events: new Map(), byNode: new Map(), duplicates: 0, messages: 0 };
    const seen = new Set<string>();
    // An ordered consumer from the first message; stops when it has caught up.
    const consumer = await js.consumers.get(STREAM, { filter_subjects: ['irqtrace.*.*.events'] });
    if ((await consumer.info()).num_pending === 0) return tally;
    const messages = await consumer.consume();
    for await (const m of messages) {
      const batch = irqtrace.v1.NodeBatch.decode(m.data);
      const key = `${batch.node}/${batch.bootId}/${String(batch.seq)}/${batch.trace}`;
      tally.messages++;
      if (seen.has(key)) tally.duplicates++;
      seen.add(key);
      const n = batch.events.length;
      for (const e of batch.events) {
        tally.sections.push({ trace: batch.trace, node: batch.node, kind: e.kind ?? 0, pid: e.task?.pid ?? 0, startNs: toBigInt(e.startNs), durationNs: Number(e.durationNs), ...(e.context?.summary ? { context: e.context.summary } : {}) });
      }
      tally.events.set(batch.trace, (tally.events.get(batch.trace) ?? 0) + n);
      tally.byNode.set(`${batch.trace}/${batch.node}`, (tally.byNode.get(`${batch.trace}/${batch.node}`) ?? 0) + n);
      if (m.info.pending === 0) break;
    }
    await messages.close();
    return tally;
  } finally {
    await nc.close();
  }
}

/** What the selftest did on a node (GuestNode.provoke), and those sections as the stream has them. */
export interface Selftest<T> {
  irqsOff: T;
  line: T;
}

/** The examples' two traces: irqs off on every CPU, and the serial line's masking. */
const SELFTEST_TRACES = { irqsOff: 'all-irqs', line: 'serial-line' } as const;

/** The trace's sections in the stream from the selftest's task that overlap its report in time. */
/** The selftest's timer callback's section (GuestNode.provokeTimer) in the trace's stream: on its CPU's node, in its time, the callback's. */
export function timerSectionsOf(tally: StreamTally, trace: string, node: GuestNode, r: Report): StreamSection[] {
  const end = r.startNs + r.durationNs + 10_000_000n;
  return tally.sections.filter((s) => s.trace === trace && s.node === node.name && s.context === TIMER_CONTEXT && s.startNs < end && s.startNs + BigInt(s.durationNs) > r.startNs);
}

/** How the selftest's timer callback is named in events and status. */
export const TIMER_CONTEXT = 'hrtimer irqburn_hardirq_fn [irqtrace_selftest]';

export function sectionsOf(tally: StreamTally, trace: string, node: GuestNode, kind: number, r: Report): StreamSection[] {
  const end = r.startNs + r.durationNs;
  return tally.sections.filter((s) => s.trace === trace && s.node === node.name && s.kind === kind && s.pid === r.pid && s.startNs < end && s.startNs + BigInt(s.durationNs) > r.startNs);
}

/**
 * Each node's selftest sections, if the stream has all of them yet; found by time, since the
 * selftest's task makes other sections too (the masking's warm-up, just before it).
 */
export async function selftestInStream(natsUrl: string, reports: Map<GuestNode, Selftest<Report>>): Promise<Map<GuestNode, Selftest<StreamSection>> | undefined> {
  const { SECTION_KIND_IRQS_OFF, SECTION_KIND_IRQ_LINE } = irqtrace.v1.SectionKind;
  const tally = await tallyStream(natsUrl);
  const found = new Map<GuestNode, Selftest<StreamSection>>();
  for (const [node, r] of reports) {
    const [irqsOff] = sectionsOf(tally, SELFTEST_TRACES.irqsOff, node, SECTION_KIND_IRQS_OFF, r.irqsOff);
    const [line] = sectionsOf(tally, SELFTEST_TRACES.line, node, SECTION_KIND_IRQ_LINE, r.line);
    if (irqsOff && line) found.set(node, { irqsOff, line });
  }
  return found.size === reports.size ? found : undefined;
}

/** selftestInStream, waited for. */
export async function waitForSelftestInStream(natsUrl: string, reports: Map<GuestNode, Selftest<Report>>, timeoutMs: number): Promise<Map<GuestNode, Selftest<StreamSection>>> {
  let found: Map<GuestNode, Selftest<StreamSection>> | undefined;
  await waitUntil('every selftest section in the stream', timeoutMs, async () => (found = await selftestInStream(natsUrl, reports)) !== undefined);
  return must(found);
}

/**
 * The status's offender for that section: same task, kind, node and length to the nanosecond
 * (the pid alone could name the masking's warm-up).
 */
export function offender(s: IrqTraceStatus | undefined, section: StreamSection, kind: 'irqs_off' | 'irq_line'): Violation | undefined {
  return s?.worstOffenders?.find((v) => v.pid === section.pid && v.kind === kind && v.node === section.node && v.durationNs === section.durationNs);
}

/** Whether both traces' statuses name every node's selftest sections among their worst offenders. */
export async function selftestInStatus(plane: ControlPlane, found: Map<GuestNode, Selftest<StreamSection>>): Promise<boolean> {
  const [all, line] = [await plane.status(SELFTEST_TRACES.irqsOff), await plane.status(SELFTEST_TRACES.line)];
  return [...found.values()].every((f) => offender(all, f.irqsOff, 'irqs_off') && offender(line, f.line, 'irq_line'));
}
