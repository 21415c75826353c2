// `irqtrace bench`: the agent pipeline's throughput and memory on this machine.
import { DEFAULT_SCENARIOS, benchPipeline } from '../bench/pipeline.js';
import type { BenchResult } from '../bench/pipeline.js';

export interface BenchCommandOptions {
  events: string;
  frames: string;
  tasks: string;
  codePaths?: string;
  proc: string;
  json: boolean;
}

function positive(text: string, what: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`${what}: '${text}' is not a whole number from 1 to ${max}`);
  return n;
}

export function formatBench(r: BenchResult, frames: number, tasks: number): string {
  const head = `irqtrace bench: ${r.symbols} kernel symbols, ${frames}-frame stacks, ${tasks} tasks; idle RSS ${r.idleRssMb.toFixed(1)} MB`;
  const rows = [['scenario', 'code paths', 'events', 'seconds', 'events/s', 'peak RSS']];
  for (const s of r.scenarios) {
    rows.push([s.name, String(s.codePaths), String(s.events), s.seconds.toFixed(2), String(s.eventsPerSecond), `${s.peakRssMb.toFixed(1)} MB`]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0))) ?? [];
  const table = rows.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  '));
  return [head, ...table].join('\n');
}

export async function bench(o: BenchCommandOptions): Promise<number> {
  let options;
  try {
    const frames = positive(o.frames, 'frames', 32);
    const codePaths = o.codePaths === undefined ? undefined : positive(o.codePaths, 'code-paths', 2 ** 30);
    options = {
      events: positive(o.events, 'events', 1e9),
      frames,
      tasks: positive(o.tasks, 'tasks', 10_000),
      scenarios: codePaths === undefined ? DEFAULT_SCENARIOS : [{ name: 'custom', codePaths }],
      proc: o.proc,
    };
  } catch (err) {
    process.stderr.write(`irqtrace: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    const result = await benchPipeline(options);
    process.stdout.write(o.json ? `${JSON.stringify(result)}\n` : `${formatBench(result, options.frames, options.tasks)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`irqtrace: bench: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
