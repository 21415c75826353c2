// Builds and drives the eBPF backend's loader (kmod/bpf/irqtrace-bpf) in a guest.
// The loader is linked against the host's libbpf, so it runs in the guest's
// chroot of the host root (vm.execHost), whose /run/tmp is writable.
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { decodeItems } from '@irqtrace/agent';
import type { CountersItem, HistItem, Item, SectionRecord } from '@irqtrace/agent';
import { repoRoot, scratchDir } from '../../test/lib/paths.js';
import { runOk } from '../../test/lib/process.js';
import { waitUntil } from '../../test/lib/wait.js';
import type { Vm } from '../../test/vm/vm.js';
import { paramString } from './harness.js';
import type { Params } from './harness.js';

let built: string | undefined;

/** Builds kmod/bpf on the host (clang, bpftool, libbpf-dev); returns the loader's path. */
export async function buildBpfLoader(): Promise<string> {
  if (built) return built;
  const dir = scratchDir('bpf');
  cpSync(join(repoRoot, 'kmod', 'bpf'), join(dir, 'bpf'), { recursive: true });
  cpSync(join(repoRoot, 'kmod', 'include'), join(dir, 'include'), { recursive: true });
  await runOk('make', ['-C', join(dir, 'bpf'), '-s'], { timeoutMs: 300_000 });
  built = join(dir, 'bpf', 'irqtrace-bpf');
  return built;
}

const RUN = '/run/tmp/irqtrace-bpf';

export interface LoaderExit {
  code: number;
  stderr: string;
}

/** One run of the loader in the background of a guest. */
export class BpfLoader {
  private constructor(
    private readonly vm: Vm,
    private readonly binary: string,
  ) {}

  static async create(vm: Vm): Promise<BpfLoader> {
    return new BpfLoader(vm, await buildBpfLoader());
  }

  /** Runs the loader to completion (for refusals): its exit code and stderr. */
  async runOnce(params: Params, timeoutMs = 300_000): Promise<LoaderExit> {
    const r = await this.vm.execHost(`${this.binary} ${paramString(params)} < /dev/null > /dev/null`, { timeoutMs });
    return { code: r.code, stderr: r.stderr.trim() };
  }

  /**
   * Starts the loader with stdin on a fifo (held open by a sleeper, so that
   * commands can come one by one) and resolves once it says it is tracing.
   */
  async start(params: Params): Promise<void> {
    const script = [
      `rm -rf ${RUN} && mkdir -p ${RUN} && mkfifo ${RUN}/in`,
      `(sleep 100000 > ${RUN}/in & echo $! > ${RUN}/holder.pid)`,
      `(${this.binary} ${paramString(params)} < ${RUN}/in > ${RUN}/out.bin 2> ${RUN}/err & echo $! > ${RUN}/pid; wait $!; echo $? > ${RUN}/rc) > /dev/null 2>&1 &`,
    ].join('; ');
    await this.vm.execHost(script);
    await waitUntil('irqtrace-bpf to attach', 300_000, async () => {
      const err = await this.stderr();
      if (/tracing:/.test(err)) return true;
      const rc = await this.exitCode();
      if (rc !== undefined) throw new Error(`irqtrace-bpf exited ${rc}: ${err}`);
      return false;
    }, 500);
  }

  async stderr(): Promise<string> {
    return (await this.vm.execHost(`cat ${RUN}/err 2>/dev/null`)).stdout;
  }

  async exitCode(): Promise<number | undefined> {
    const r = await this.vm.execHost(`cat ${RUN}/rc 2>/dev/null`);
    return r.stdout.trim() === '' ? undefined : Number(r.stdout.trim());
  }

  /** Sends one stdin line; resolves with the loader's answer ("ok ..." or "refused: ..."). */
  async command(line: string): Promise<string> {
    const before = (await this.stderr()).split('\n').length;
    await this.vm.execHost(`echo '${line}' > ${RUN}/in`);
    let answer = '';
    await waitUntil(`an answer to '${line}'`, 60_000, async () => {
      const lines = (await this.stderr()).split('\n');
      answer = lines.slice(before - 1).find((l) => /irqtrace-bpf: (ok|refused)/.test(l)) ?? '';
      return answer !== '';
    });
    return answer;
  }

  /** Everything written to stdout so far (a record still being written is left out). */
  async items(): Promise<Item[]> {
    return decodeItems(await this.vm.readFile(`/hostroot${RUN}/out.bin`)).items;
  }

  async records(): Promise<SectionRecord[]> {
    return (await this.items()).filter((i): i is SectionRecord => i.type === 'record');
  }

  /** The latest stats snapshot ("stats" on stdin). */
  async stats(): Promise<{ counters: CountersItem[]; hists: HistItem[] }> {
    const before = (await this.items()).length;
    await this.command('stats');
    const fresh = (await this.items()).slice(before);
    return {
      counters: fresh.filter((i): i is CountersItem => i.type === 'counters'),
      hists: fresh.filter((i): i is HistItem => i.type === 'hist'),
    };
  }

  /** Ends the run with a signal, or by closing stdin ('eof'); resolves with how it exited. */
  async stop(how: 'TERM' | 'INT' | 'eof' = 'TERM'): Promise<LoaderExit> {
    const target = how === 'eof' ? 'holder.pid' : 'pid';
    await this.vm.execHost(`sleep 0.2; kill -${how === 'eof' ? 'TERM' : how} $(cat ${RUN}/${target})`);
    let code: number | undefined;
    await waitUntil('irqtrace-bpf to exit', 120_000, async () => (code = await this.exitCode()) !== undefined);
    await this.vm.execHost(`kill $(cat ${RUN}/holder.pid) 2>/dev/null; true`);
    return { code: code ?? -1, stderr: await this.stderr() };
  }
}
