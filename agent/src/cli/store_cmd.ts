// `irqtrace list` and `irqtrace clear`: the standalone agent's store, and the
// module's statistics. Apart from agent_cmd.ts, so that these commands load
// only what they use (a CLI start under emulation is the modules it reads).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventStore } from '../daemon/store.js';
import { VIOLATION_HEADER, formatEnds, formatLock, formatNs, formatRow, formatWhere } from './format.js';

interface StoredEvent {
  recordedAt?: string;
  kind?: string;
  cpu?: number;
  irq?: number;
  durationNs?: string;
  method?: string;
  errorBoundNs?: string;
  start?: { exact?: boolean };
  end?: { exact?: boolean };
  lock?: { address?: string; symbol?: string; offset?: string; module?: string };
  task?: { pid?: number; comm?: string; podUid?: string; containerId?: string };
  context?: { summary?: string };
  hypervisor?: boolean;
  stack?: { symbol?: string }[];
  traces?: string[];
}

export function listStore(path: string, json: boolean): number {
  const events = new EventStore(path).list() as StoredEvent[];
  if (json) {
    for (const e of events) process.stdout.write(`${JSON.stringify(e)}\n`);
    return 0;
  }
  process.stdout.write(`${formatRow(VIOLATION_HEADER)}\n`);
  for (const e of events) {
    const kind = (e.kind ?? '').replace('SECTION_KIND_', '').toLowerCase().replace('_', '-');
    process.stdout.write(
      `${formatRow({
        time: (e.recordedAt ?? '').slice(11, 23),
        kind: kind === 'irq-line' ? `irq-line ${e.irq ?? 0}` : kind,
        cpu: String(e.cpu ?? 0),
        duration: formatNs(BigInt(e.durationNs ?? '0')),
        ends: formatEnds({ method: e.method ?? '', start: e.start, end: e.end, errorNs: BigInt(e.errorBoundNs ?? '0') }),
        task: e.hypervisor ? 'hypervisor (steal)' : (e.context?.summary ?? `${e.task?.comm ?? '?'}/${e.task?.pid ?? 0}`),
        where: e.context || e.hypervisor ? '-' : formatWhere(e.task),
        lock: e.lock ? formatLock({ ...e.lock, address: BigInt(e.lock.address ?? '0'), offset: BigInt(e.lock.offset ?? '0') }) : '-',
        frames: (e.stack ?? []).slice(0, 3).map((f) => f.symbol ?? '?').join(' < '),
      })}\n`,
    );
  }
  process.stderr.write(`irqtrace: ${events.length} violations in ${path}\n`);
  return 0;
}

export function clearStore(path: string): number {
  new EventStore(path).clear();
  process.stderr.write(`irqtrace: cleared ${path}\n`);
  return 0;
}

/** Zeroes the loaded module's histograms and counters (/dev/irqtrace_stats). */
export function clearKernel(devRoot = '/dev'): number {
  try {
    // r+: a device that is not there is an error, not a regular file made in its place.
    writeFileSync(join(devRoot, 'irqtrace_stats'), 'clear', { flag: 'r+' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    process.stderr.write(`irqtrace: cannot clear the kernel side: ${code === 'ENOENT' ? 'the irqtrace module is not loaded (the eBPF backend keeps its histograms in the agent\'s loader, cleared when it starts)' : String(err)}\n`);
    return 1;
  }
  process.stderr.write('irqtrace: cleared the kernel module\'s histograms and counters\n');
  return 0;
}
