#!/usr/bin/env node
// The irqtrace command line.
import { Command, Option } from 'commander';
import { record } from './record.js';
import type { RecordOptions } from './record.js';

const program = new Command('irqtrace')
  .description('How long Linux keeps interrupts disabled, and who did it.')
  .version('0.1.0');

program
  .command('record')
  .description('trace this machine and print every section over the threshold as it happens')
  .option('--target <what>', 'all (irqs off on CPUs, and every IRQ line), irqs-off, or irq:N[,M...]', 'all')
  .option('--threshold <duration>', 'sections this long or longer are violations (e.g. 500us, 2ms)', '100us')
  .addOption(new Option('--method <method>', 'irqs-off method').choices(['auto', 'exact', 'sampled', 'off']).default('auto'))
  .addOption(new Option('--backend <backend>', 'kernel side').choices(['auto', 'kmod', 'ebpf']).default('auto'))
  .option('--period <duration>', 'sampled method: timer period, the error bound', '1ms')
  .option('--cpus <list>', "CPUs to trace: 'all' or a list like 0-3,6", 'all')
  .option('--no-stacks', 'no kernel stacks')
  .option('--softirqs', 'also sample softirqs-off sections (kernel module only)', false)
  .option('--duration <duration>', 'stop after this long (default: at Ctrl-C)')
  .option('--json', 'one JSON object per event on stdout', false)
  .option('--module <path>', 'kmod: this irqtrace.ko')
  .option('--module-dir <dir>', 'kmod: prebuilt modules as <dir>/<uname -r>/irqtrace.ko')
  .option('--source <dir>', "kmod: the module's source, built against /lib/modules/<uname -r>/build")
  .option('--loader <path>', 'ebpf: the irqtrace-bpf loader')
  .option('--proc <dir>', 'where the host /proc is', '/proc')
  .option('--cgroup-root <dir>', 'where the host cgroup2 hierarchy is', '/sys/fs/cgroup')
  .addHelpText('after', '\nExamples:\n  irqtrace record --threshold 500us --duration 30s\n  irqtrace record --target irq:24 --json > events.jsonl\n')
  .action(async (options: RecordOptions) => {
    process.exitCode = await record(options);
  });

await program.parseAsync();
