// `npm run bench:agent`: the agent's record pipeline as fast as it goes on one
// core, run as the `irqtrace` command runs (node with the heap flags of its
// #! line): `irqtrace bench` decodes synthetic uapi records (16-frame stacks
// of this machine's kernel text addresses) from 256 KiB chunks, symbolizes,
// attributes (live tasks, served by the caches as in a storm), filters by trace,
// makes Events, counts them in the metrics and batches them into encoded
// EventBatches. Two scenarios: a storm from 64 code paths, and a cold one where
// every record's code path is new. Last line: events/s of the storm and the
// peak RSS under load, with the idle RSS and the cold figures.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { agentCli } from '../lib/paths.js';
import type { BenchResult } from '../../agent/src/bench/pipeline.js';

const events = process.env.BENCH_EVENTS ?? '600000';
const shebang = readFileSync(agentCli, 'utf8').split('\n', 1)[0] ?? '';
const nodeFlags = shebang.split(/\s+/).filter((arg) => arg.startsWith('--'));
const args = [...nodeFlags, agentCli, 'bench', '--events', events, '--frames', '16', '--tasks', '8', '--json'];

console.log(`bench:agent: node ${args.join(' ')}`);
const result = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })) as BenchResult;
const scenario = (name: string) => {
  const s = result.scenarios.find((x) => x.name === name);
  if (!s) throw new Error(`bench:agent: no ${name} scenario in the result`);
  return s;
};
const storm = scenario('storm');
const cold = scenario('cold');
const { formatBench } = await import('../../agent/src/cli/bench_cmd.js');
console.log(formatBench(result, 16, 8));
console.log(
  `bench:agent events_per_s=${storm.eventsPerSecond} rss_mb=${storm.peakRssMb.toFixed(0)} idle_rss_mb=${result.idleRssMb.toFixed(0)} cold_events_per_s=${cold.eventsPerSecond} cold_rss_mb=${cold.peakRssMb.toFixed(0)}`,
);
