// Paths of the control-plane binaries that test/cluster/build-binaries.sh
// built into the cache. Tests never build them: setup does.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';
import { runOk } from '../lib/process.js';

export type Tool = 'kube' | 'etcd' | 'helm' | 'nats' | 'containerd' | 'runc' | 'cni';

const script = join(repoRoot, 'test/cluster/build-binaries.sh');
const dirs = new Map<Tool, string>();

/** Absolute path of a binary of tool (e.g. binary('kube', 'kubectl')). */
export async function binary(tool: Tool, name: string): Promise<string> {
  let dir = dirs.get(tool);
  if (!dir) {
    dir = (await runOk(script, ['--dir', tool])).trim();
    if (!existsSync(join(dir, '.complete'))) {
      throw new Error(`${tool} is not built for its pinned version: run test/setup (expected ${dir})`);
    }
    dirs.set(tool, dir);
  }
  return join(dir, name);
}
