// `npm run cluster -- up|down|status`: the test cluster of kubelet nodes
// (test/node/rig.ts: control plane, NATS, a tracing-kernel guest and a Debian
// guest joined as nodes, irqtrace installed with helm) kept running between
// commands, to try things against in seconds instead of the minutes a fresh
// rig takes. `up` starts a detached process that owns the rig (QEMU, etcd,
// kube-apiserver, ... are its children) and returns once the rig is ready,
// having written and printed a kubeconfig and each node's shell command;
// `down` stops that process, which stops everything; `status` says what runs.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { run } from '../lib/process.js';
import { NodeRig, NS } from './rig.js';

const dir = join(tmpdir(), 'irqtrace-cluster');
const stateFile = join(dir, 'state.json');
const logFile = join(dir, 'up.log');
const envFile = join(dir, 'env.sh');

interface State {
  pid: number;
  ready: boolean;
  startedAt: string;
  kubeconfig?: string;
  kubectl?: string;
  helm?: string;
  nats?: string;
  installed?: boolean;
  nodes?: { name: string; kernel: string; ssh: string }[];
  error?: string;
}

const readState = (): State | undefined => (existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as State) : undefined);
const writeState = (s: State) => {
  writeFileSync(`${stateFile}.tmp`, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(`${stateFile}.tmp`, stateFile);
};
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a person pastes into a shell to use the cluster. */
function describe(s: State): string {
  const lines = [
    `export KUBECONFIG=${s.kubeconfig ?? ''}`,
    `alias kubectl=${s.kubectl ?? ''} helm=${s.helm ?? ''}`,
    `# NATS (JetStream): ${s.nats ?? ''}; irqtrace ${s.installed ? `installed with helm in namespace ${NS}` : 'not installed (up --no-install)'}`,
    ...(s.nodes ?? []).map((n) => `# node ${n.name} (${n.kernel}):\nalias ssh-${n.name}="${n.ssh.replace(/"/g, '\\"')}"`),
  ];
  return `${lines.join('\n')}\n`;
}

/** The detached process that owns the rig until SIGTERM. */
async function serve(install: boolean): Promise<void> {
  const started = Date.now();
  const say = (line: string) => { console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`); };
  const state: State = { pid: process.pid, ready: false, startedAt: new Date().toISOString() };
  writeState(state);
  let rig: NodeRig | undefined;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    say('stopping the cluster');
    await rig?.stop();
    rmSync(stateFile, { force: true });
    rmSync(envFile, { force: true });
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
    Object.assign(state, {
      ready: true,
      kubeconfig: rig.cluster.kubeconfigPath,
      kubectl: rig.cluster.binaries.kubectl,
      helm: rig.cluster.binaries.helm,
      nats: rig.nats?.url,
      installed: install,
      nodes: [...rig.nodes.entries()].map(([, n]) => ({ name: n.name, kernel: n.vm.kernel.release, ssh: n.vm.sshCommand() })),
    });
    writeFileSync(envFile, describe(state));
    writeState(state);
    say(`ready in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } catch (err) {
    writeState({ ...state, error: err instanceof Error ? err.message : String(err) });
    say(`failed: ${String(err)}`);
    await rig?.stop().catch(() => undefined);
    process.exit(1);
  }
}

async function up(install: boolean): Promise<number> {
  const s = readState();
  if (s && alive(s.pid)) {
    if (s.ready) {
      process.stdout.write(`cluster: already up (pid ${s.pid}); source ${envFile}\n${describe(s)}`);
      return 0;
    }
    console.log(`cluster: still starting (pid ${s.pid}); following ${logFile}`);
  } else {
    mkdirSync(dir, { recursive: true });
    rmSync(stateFile, { force: true });
    const log = openSync(logFile, 'w');
    const child = spawn(process.execPath, [...process.execArgv, import.meta.filename, 'serve', ...(install ? [] : ['--no-install'])], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    child.unref();
    closeSync(log);
    console.log(`cluster: starting (pid ${child.pid ?? '?'}; log ${logFile})`);
  }
  // Follow the log until the state says ready, or the owner dies.
  let shown = 0;
  for (;;) {
    if (existsSync(logFile) && statSync(logFile).size > shown) {
      const text = readFileSync(logFile, 'utf8');
      process.stdout.write(text.slice(shown));
      shown = text.length;
    }
    const now = readState();
    if (now?.ready) {
      process.stdout.write(`cluster: up; source ${envFile}\n${describe(now)}`);
      return 0;
    }
    if (now?.error || (now && !alive(now.pid))) {
      console.error(`cluster: failed to start: ${now.error ?? 'its process exited'} (log ${logFile})`);
      return 1;
    }
    await sleep(1000);
  }
}

async function down(): Promise<number> {
  const s = readState();
  if (!s || !alive(s.pid)) {
    rmSync(stateFile, { force: true });
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
  const s = readState();
  if (!s || !alive(s.pid)) {
    console.log('cluster: not running');
    return 3;
  }
  if (!s.ready) {
    console.log(`cluster: starting (pid ${s.pid}, since ${s.startedAt}); log ${logFile}`);
    return 0;
  }
  process.stdout.write(`cluster: up (pid ${s.pid}, since ${s.startedAt})\n${describe(s)}`);
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
