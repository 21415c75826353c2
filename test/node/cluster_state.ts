// A node rig left running in the background by a detached process that owns
// it (`npm run cluster -- up`, `npm run demo -- --keep`): where that process
// says how far it got, what it wrote for people to paste into a shell, and how
// the command that started it follows it until it is ready. One owner at a
// time; `npm run cluster -- down` stops whichever it is.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import type { NodeRig } from './rig.js';
import { NS } from './rig.js';

export const clusterDir = join(tmpdir(), 'irqtrace-cluster');
const stateFile = join(clusterDir, 'state.json');
export const clusterLog = join(clusterDir, 'up.log');
export const clusterEnv = join(clusterDir, 'env.sh');

export interface ClusterState {
  pid: number;
  /** What owns it: the cluster command or the demo. */
  owner: string;
  ready: boolean;
  startedAt: string;
  kubeconfig?: string;
  kubectl?: string;
  helm?: string;
  nats?: string;
  installed?: boolean;
  nodes?: { name: string; kernel: string; ssh: string }[];
  /** The owner's own last line (the demo's `demo: ...`), printed by whoever follows it. */
  summary?: string;
  error?: string;
}

export const readClusterState = (): ClusterState | undefined => (existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as ClusterState) : undefined);

export function writeClusterState(s: ClusterState): void {
  writeFileSync(`${stateFile}.tmp`, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(`${stateFile}.tmp`, stateFile);
}

export function forgetClusterState(): void {
  rmSync(stateFile, { force: true });
  rmSync(clusterEnv, { force: true });
}

export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** What a person pastes into a shell to use the cluster. */
export function describeCluster(s: ClusterState): string {
  const lines = [
    `export KUBECONFIG=${s.kubeconfig ?? ''}`,
    `alias kubectl=${s.kubectl ?? ''} helm=${s.helm ?? ''}`,
    `# NATS (JetStream): ${s.nats ?? ''}; irqtrace ${s.installed ? `installed with helm in namespace ${NS}` : 'not installed'}`,
    ...(s.nodes ?? []).map((n) => `# node ${n.name} (${n.kernel}):\nalias ssh-${n.name}="${n.ssh.replace(/"/g, '\\"')}"`),
    '# stop everything: npm run cluster -- down',
  ];
  return `${lines.join('\n')}\n`;
}

/** The state of a ready rig, written with the shell lines that reach it. */
export function markClusterReady(state: ClusterState, rig: NodeRig, installed: boolean, summary?: string): void {
  Object.assign(state, {
    ready: true,
    kubeconfig: rig.cluster.kubeconfigPath,
    kubectl: rig.cluster.binaries.kubectl,
    helm: rig.cluster.binaries.helm,
    nats: rig.nats?.url,
    installed,
    nodes: [...rig.nodes.values()].map((n) => ({ name: n.name, kernel: n.vm.kernel.release, ssh: n.vm.sshCommand() })),
    summary,
  });
  writeFileSync(clusterEnv, describeCluster(state));
  writeClusterState(state);
}

/**
 * Starts `node <script> <args>` detached, as the owner, its output in the log; or, if an owner
 * already runs, follows that one. Returns the running owner's pid.
 */
export function startOwner(script: string, args: string[]): { pid: number; started: boolean } {
  const s = readClusterState();
  if (s && alive(s.pid)) return { pid: s.pid, started: false };
  mkdirSync(clusterDir, { recursive: true });
  rmSync(stateFile, { force: true });
  const log = openSync(clusterLog, 'w');
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  closeSync(log);
  return { pid: child.pid ?? -1, started: true };
}

/** Prints the owner's log as it grows until its state says ready (then returns it) or it failed. */
export async function followOwner(pid: number): Promise<ClusterState> {
  let shown = 0;
  for (;;) {
    if (existsSync(clusterLog) && statSync(clusterLog).size > shown) {
      const text = readFileSync(clusterLog, 'utf8');
      process.stdout.write(text.slice(shown));
      shown = text.length;
    }
    const now = readClusterState();
    if (now?.ready) return now;
    if (now?.error || !alive(pid)) throw new Error(`${now?.error ?? 'its process exited'} (log ${clusterLog})`);
    await sleep(1000);
  }
}
