#!/usr/bin/env -S node --max-semi-space-size=2 --max-old-space-size=192
// (Heap flags: V8's defaults let a busy agent's young generation grow to 48 MB
// and its old one to several times the live data; these keep RSS under 120 MB
// at a few percent of throughput. `npm run bench:agent` runs with them.)
// The irqtrace command line. Each command's module is imported when it runs:
// `record` need not load gRPC and Prometheus, and start-up time is what a
// person at the prompt (or a slow emulated machine) notices.
import { Command, Option } from 'commander';
import type { AgentCommandOptions } from './agent_cmd.js';
import type { BenchCommandOptions } from './bench_cmd.js';
import type { DriverLoadOptions } from './driver_cmd.js';
import { addHostOptions } from './host_options.js';
import type { RecordOptions } from './record.js';
import { DEFAULT_AGENT_SOCKET, DEFAULT_STORE } from './defaults.js';
import { LIMITS, durationText } from '@irqtrace/proto/limits';
import { RECORD_METHOD_CHOICES } from '../config/kernel_config.js';

const program = new Command('irqtrace')
  .description('How long Linux keeps interrupts disabled, and who did it.')
  .version('0.1.0');

const recordCommand = program
  .command('record')
  .description('trace this machine and print every section over the threshold as it happens')
  .option('--target <what>', 'all (irqs off on CPUs, and every IRQ line), irqs-off, or IRQ lines by number or /proc/interrupts name: irq:24,nvme0q1,eth0-*', 'all')
  .option('--threshold <duration>', 'sections this long or longer are violations (e.g. 500us, 2ms)', durationText(LIMITS.thresholdNs.default))
  .addOption(new Option('--method <method>', 'irqs-off method (hybrid: stock x86 kernels; the kernel module times lock, scheduler and interrupt sections exactly, eBPF interrupt sections; see the README)').choices(RECORD_METHOD_CHOICES).default('auto'))
  .addOption(new Option('--backend <backend>', 'kernel side').choices(['auto', 'kmod', 'ebpf']).default('auto'))
  .option('--period <duration>', 'sampled method: timer period, the error bound', durationText(LIMITS.periodNs.default))
  .option('--cpus <list>', "CPUs to trace: 'all' or a list like 0-3,6", 'all')
  .option('--no-stacks', 'no kernel stacks')
  .option('--softirqs', 'also sample softirqs-off sections (kernel module only)', false)
  .option('--duration <duration>', 'stop after this long (default: at Ctrl-C)')
  .option('--json', 'one JSON object per event on stdout', false)
  .option('--output <file>', "also write the sections to a Chrome trace-event file: a track per CPU and IRQ line, each section a slice with its sites, ends and stack (open it in Perfetto's UI or chrome://tracing)")
  .option('--agent-socket <path>', "the node agent's local socket: when an agent answers there, its events are shown (its traces choose what the kernel side does)", DEFAULT_AGENT_SOCKET)
  .option('--no-agent', 'run a kernel side of its own even if the node agent runs (eBPF only then: the module has one reader)');
addHostOptions(recordCommand)
  .addHelpText('after', '\nExamples:\n  irqtrace record --threshold 500us --duration 30s\n  irqtrace record --target irq:24 --json > events.jsonl\n  irqtrace record --target irq:nvme0q* --threshold 50us\n')
  .action(async (options: RecordOptions) => {
    const { record } = await import('./record.js');
    const given = recordCommand.options.map((opt) => opt.attributeName()).filter((name) => recordCommand.getOptionValueSource(name) === 'cli');
    process.exitCode = await record({ ...options, given });
  });

const agentCommand = program
  .command('agent')
  .description('run as the node agent: traces from the ingest (Kubernetes) or from a config file (standalone)')
  .option('--config <file>', 'standalone config (traces, store, metrics port), e.g. /etc/irqtrace/config.yaml')
  .option('--node <name>', 'node name (default: $NODE_NAME, else the hostname)')
  .option('--ingest <host:port>', "the operator's ingest; without it, events go to the local store")
  .option('--tls-ca <file>', 'CA to verify the ingest with (enables TLS)')
  .option('--tls-cert <file>', 'client certificate (mTLS)')
  .option('--tls-key <file>', 'client key (mTLS)')
  .option('--tls-server-name <name>', "the ingest certificate's name, when it differs from the address")
  .option('--spool <dir>', 'keeps unacknowledged batches across ingest outages and restarts')
  .option('--store <file>', `local event store (default without --ingest: ${DEFAULT_STORE})`)
  .option('--metrics-port <port>', 'serve /metrics, /healthz, /readyz on this port')
  .option('--metrics-host <address>', 'address to serve metrics on', '127.0.0.1')
  .option('--local-socket <path>', "serve the events to `irqtrace record` on this machine on this unix socket (root only); '' for none", DEFAULT_AGENT_SOCKET);
addHostOptions(agentCommand).action(async (options: AgentCommandOptions) => {
  const { runAgent } = await import('./agent_cmd.js');
  process.exitCode = await runAgent(options);
});

program
  .command('driver')
  .description('the kernel module for this machine')
  .command('load')
  .description('find irqtrace.ko for the agent to load: one already loaded if its ABI fits, else the one cached for this exact kernel (checked), else built against the headers and cached; else say why, for the agent to use eBPF')
  .option('--source <dir>', "the module's source", '/usr/lib/irqtrace/kmod')
  .option('--cache <dir>', 'built modules, by kernel release, build id and source digest', '/var/lib/irqtrace/modules')
  .option('--state <file>', 'write the outcome here as JSON (the agent reads it: --driver-state)')
  .option('--host-usr-lib <dir>', "the host's /usr/lib, for Debian's headers (they link to its linux-kbuild-<version>)")
  .option('--proc <dir>', 'where the host /proc is', '/proc')
  .action(async (options: DriverLoadOptions) => {
    const { driverLoad } = await import('./driver_cmd.js');
    process.exitCode = await driverLoad(options);
  });

program
  .command('list')
  .description('list the violations the standalone agent stored')
  .option('--store <file>', 'the store', DEFAULT_STORE)
  .option('--json', 'one JSON object per event', false)
  .action(async (options: { store: string; json: boolean }) => {
    const { listStore } = await import('./store_cmd.js');
    process.exitCode = listStore(options.store, options.json);
  });

program
  .command('clear')
  .description("clear the standalone agent's stored violations, or with --kernel the loaded module's histograms and counters")
  .option('--store <file>', 'the store', DEFAULT_STORE)
  .option('--kernel', "zero the kernel module's histograms and counters instead (/dev/irqtrace_stats)", false)
  .option('--dev <dir>', 'where /dev is', '/dev')
  .action(async (options: { store: string; kernel: boolean; dev: string }) => {
    const { clearKernel, clearStore } = await import('./store_cmd.js');
    process.exitCode = options.kernel ? clearKernel(options.dev) : clearStore(options.store);
  });

program
  .command('bench')
  .description("measure this machine's agent pipeline: records a second decoded, attributed, symbolized and batched on one core, and memory")
  .option('--events <n>', 'records per scenario', '400000')
  .option('--frames <n>', 'stack frames per record', '16')
  .option('--tasks <n>', 'distinct tasks (live pids) the records name', '8')
  .option('--code-paths <n>', 'one scenario with this many distinct sites + stacks (default: a storm of 64, and a cold run past the caches)')
  .option('--proc <dir>', 'where /proc is', '/proc')
  .option('--json', 'the result as one JSON object', false)
  .action(async (options: BenchCommandOptions) => {
    const { bench } = await import('./bench_cmd.js');
    process.exitCode = await bench(options);
  });

await program.parseAsync();
