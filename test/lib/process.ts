// Child processes for the test rigs: started with their output kept in a log
// file (and a bounded in-memory tail for error messages), stopped for sure,
// and killed if the test process itself exits first.
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

const TAIL_BYTES = 64 * 1024;

export class Service {
  readonly child: ChildProcess;
  private tailText = '';
  private readonly log: WriteStream;
  private readonly exited: Promise<number | null>;
  private readonly watchers = new Set<() => void>();

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    logPath: string,
    options: SpawnOptions = {},
  ) {
    this.log = createWriteStream(logPath, { flags: 'a' });
    this.child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    live.add(this.child);
    const onData = (chunk: Buffer) => {
      this.log.write(chunk);
      this.tailText = (this.tailText + chunk.toString('utf8')).slice(-TAIL_BYTES);
      for (const watch of this.watchers) watch();
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this.child);
        this.log.end();
        resolve(code ?? (signal ? 128 : null));
        for (const watch of this.watchers) watch();
      });
      this.child.once('error', (err) => {
        this.tailText += `\n[spawn error] ${err.message}\n`;
      });
    });
  }

  /** The last 64 KiB of its output. */
  get tail(): string {
    return this.tailText;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first match of pattern in the output; rejects if the process exits or time runs out. */
  async waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = pattern.exec(this.tailText);
        if (match) {
          finish(() => { resolve(match); });
        } else if (!this.running) {
          finish(() => { reject(new Error(`${this.name} exited before printing ${pattern}:\n${this.tailText.slice(-4000)}`)); });
        }
      };
      const timer = setTimeout(() => {
        finish(() => { reject(new Error(`${this.name} did not print ${pattern} within ${timeoutMs} ms:\n${this.tailText.slice(-4000)}`)); });
      }, timeoutMs);
      const finish = (then: () => void) => {
        clearTimeout(timer);
        this.watchers.delete(check);
        then();
      };
      this.watchers.add(check);
      check();
    });
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves when it has exited. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) {
      await this.exited;
      return;
    }
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  async exit(): Promise<number | null> {
    return this.exited;
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; never throws for a non-zero exit. */
export async function run(
  command: string,
  args: readonly string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      args,
      { timeout: options.timeoutMs ?? 60_000, env: options.env, cwd: options.cwd, maxBuffer: 512 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr: err && code === 1 && !stderr ? err.message : stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Runs a command and returns its stdout; throws with its output when it fails. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: Parameters<typeof run>[2] = {},
): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}:\n${result.stderr}${result.stdout}`.slice(0, 8000));
  }
  return result.stdout;
}
