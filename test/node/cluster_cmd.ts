// `npm run cluster -- up|down|status`: the test cluster of kubelet nodes
// (test/node/rig.ts: control plane, NATS, a tracing-kernel guest and a Debian
// guest joined as nodes, irqtrace installed with helm) kept running between
// commands, to try things against in seconds instead of the minutes a fresh
// rig takes. `up` starts a detached process that owns the rig (QEMU, etcd,
// kube-apiserver, ... are its children) and returns once the rig is ready,
// having written and printed a kubeconfig and each node's shell command;
// `down` stops that process, which stops everything; `status` says what runs.
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { run } from '../lib/process.js';
import { NodeRig } from './rig.js';
import { alive, clusterEnv, clusterLog, describeCluster, followOwner, forgetClusterState, markClusterReady, readClusterState, startOwner, writeClusterState } from './cluster_state.js';
import type { ClusterState } from './cluster_state.js';

/** The detached process that owns the rig until SIGTERM. */
async function serve(install: boolean): Promise<void> {
  const started = Date.now();
  const say = (line: string) => { console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`); };
  const state: ClusterState = { pid: process.pid, owner: 'npm run cluster -- up', ready: false, startedAt: new Date().toISOString() };
  writeClusterState(state);
  let rig: NodeRig | undefined;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    say('stopping the cluster');
    await rig?.stop();
    forgetClusterState();
    say('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => { void stop(); });
  process.on('SIGINT', () => { void stop(); });
  try {
    rig = await NodeRig.start({ say });
    if (install) {
      say('helm install irqtrace from charts/irqtrace');
      const r = await rig.helm('install');
      if (r.code !== 0) throw new Error(`helm install: ${r.stderr}`);
    }
    markClusterReady(state, rig, install);
    say(`ready in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } catch (err) {
    writeClusterState({ ...state, error: err instanceof Error ? err.message : String(err) });
    say(`failed: ${String(err)}`);
    await rig?.stop().catch(() => undefined);
    process.exit(1);
  }
}

async function up(install: boolean): Promise<number> {
  const { pid, started } = startOwner(import.meta.filename, ['serve', ...(install ? [] : ['--no-install'])]);
  const s = readClusterState();
  if (!started && s?.ready) {
    process.stdout.write(`cluster: already up (pid ${pid}, ${s.owner}); source ${clusterEnv}\n${describeCluster(s)}`);
    return 0;
  }
  console.log(started ? `cluster: starting (pid ${pid}; log ${clusterLog})` : `cluster: still starting (pid ${pid}); following ${clusterLog}`);
  try {
    const ready = await followOwner(pid);
    process.stdout.write(`cluster: up; source ${clusterEnv}\n${describeCluster(ready)}`);
    return 0;
  } catch (err) {
    console.error(`cluster: failed to start: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

async function down(): Promise<number> {
  const s = readClusterState();
  if (!s || !alive(s.pid)) {
    forgetClusterState();
    console.log('cluster: not running');
    return 0;
  }
  process.kill(s.pid, 'SIGTERM');
  const deadline = Date.now() + 180_000;
  while (alive(s.pid)) {
    if (Date.now() > deadline) {
      // Its children die with it (the rig's process registry kills them at exit).
      process.kill(s.pid, 'SIGKILL');
      console.error('cluster: did not stop in 180 s: killed');
      return 1;
    }
    await sleep(500);
  }
  console.log(`cluster: down (pid ${s.pid} stopped everything it ran)`);
  return 0;
}

async function status(): Promise<number> {
  const s = readClusterState();
  if (!s || !alive(s.pid)) {
    console.log('cluster: not running');
    return 3;
  }
  if (!s.ready) {
    console.log(`cluster: starting (pid ${s.pid}, ${s.owner}, since ${s.startedAt}); log ${clusterLog}`);
    return 0;
  }
  process.stdout.write(`cluster: up (pid ${s.pid}, ${s.owner}, since ${s.startedAt})\n${describeCluster(s)}`);
  const kubectl = async (args: string[]) => {
    const r = await run(s.kubectl ?? 'kubectl', ['--kubeconfig', s.kubeconfig ?? '', ...args]);
    return r.stdout + r.stderr;
  };
  process.stdout.write(await kubectl(['get', 'nodes', '-o', 'wide']));
  process.stdout.write(await kubectl(['get', 'pods', '-A', '-o', 'wide']));
  process.stdout.write(await kubectl(['get', 'irqtraces']));
  return 0;
}

const program = new Command('cluster').description('a test cluster of kubelet nodes with irqtrace installed, kept running between commands');
program.command('up').description('start it (or follow a start under way) and print how to use it').option('--no-install', 'do not helm install irqtrace')
  .action(async (o: { install: boolean }) => { process.exitCode = await up(o.install); });
program.command('down').description('stop everything it runs').action(async () => { process.exitCode = await down(); });
program.command('status').description('what runs').action(async () => { process.exitCode = await status(); });
program.command('serve', { hidden: true }).option('--no-install').action(async (o: { install: boolean }) => { await serve(o.install); });
await program.parseAsync();
