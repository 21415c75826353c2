// QEMU guests for kernel tests. A guest boots one of the cached kernels under
// TCG with a busybox initramfs, sees the host's root read-only at /hostroot
// (host programs run with `chroot /hostroot`), and is reached through ssh to
// a QEMU hostfwd port on 127.0.0.1. `ssh -R` gives the guest's own loopback a
// port that leads to a port on the host's loopback; no other address is used.
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { cacheDir, scratchDir } from '../lib/paths.js';
import { freePort } from '../lib/ports.js';
import { Service, run, runOk } from '../lib/process.js';
import type { RunResult } from '../lib/process.js';
import { waitUntil } from '../lib/wait.js';
import { kernel, type Flavour, type Kernel } from './kernels.js';

export interface BootOptions {
  flavour: Flavour;
  memoryMb?: number;
  cpus?: number;
  /**
   * Multi-threaded TCG (one host thread per vCPU). Off by default: every
   * guest here patches kernel text (the module's and eBPF's probes flip static
   * keys and ftrace sites), and multi-threaded TCG hangs on cross-modifying
   * code: 4 of 37 boots, and issue 29's soft lockup (both vCPUs at a jump-label
   * site's int3, an RCU stall "timer wakeup didn't happen"). Single-threaded
   * TCG ran 0 hangs in 10 boots at about the same speed. Only for a guest that
   * never patches its text.
   */
  multiThread?: boolean;
  /** Extra kernel command-line words. */
  cmdline?: readonly string[];
  bootTimeoutMs?: number;
  /** TCP ports QEMU forwards from the host's 127.0.0.1 to the same port in the guest (e.g. a kubelet's). */
  forwards?: readonly number[];
}

export interface ExecOptions {
  timeoutMs?: number;
  /** Written to the command's stdin. */
  input?: string;
}

const sshKey = join(cacheDir, 'vm-ssh', 'id_ed25519');

export class Vm {
  private constructor(
    readonly kernel: Kernel,
    private readonly qemu: Service,
    private readonly sshPort: number,
    private readonly workDir: string,
    private readonly master: Service,
  ) {}

  static async boot(options: BootOptions): Promise<Vm> {
    const k = await kernel(options.flavour);
    const workDir = scratchDir(`vm-${options.flavour}`);
    const sshPort = await freePort();
    const accel = options.multiThread ? 'tcg,thread=multi' : 'tcg,thread=single';
    const cmdline = [
      'console=ttyS0',
      'panic=-1',
      'quiet',
      // Without it, TCG's TSC is marked unstable and sched_clock/trace clocks go stale on idle CPUs.
      'tsc=reliable',
      `irqtrace.modules=${join(k.modulesDir, '..')}`,
      ...(options.cmdline ?? []),
      // For debugging a guest's kernel, e.g. IRQTRACE_VM_CMDLINE='loglevel=7 softlockup_all_cpu_backtrace=1'
      // (quiet hides a soft lockup's stack).
      ...(process.env.IRQTRACE_VM_CMDLINE?.split(' ').filter(Boolean) ?? []),
    ];
    const args = [
      '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
      '-m', String(options.memoryMb ?? 2048),
      '-smp', String(options.cpus ?? 2),
      '-accel', accel, '-cpu', 'max',
      '-kernel', k.vmlinux, '-initrd', k.initramfs,
      '-append', cmdline.join(' '),
      '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
      // restrict=on: the guest can reach nothing outside; only the forwarded port comes in.
      '-netdev', ['user,id=n0,restrict=on', `hostfwd=tcp:127.0.0.1:${sshPort}-:22`, ...(options.forwards ?? []).map((p) => `hostfwd=tcp:127.0.0.1:${p}-:${p}`)].join(','),
      '-device', 'virtio-net-pci,netdev=n0',
    ];
    const qemu = new Service(`qemu(${options.flavour})`, 'qemu-system-x86_64', args, join(workDir, 'console.log'));
    try {
      await qemu.waitForOutput(/irqtrace-guest: ready/, options.bootTimeoutMs ?? 120_000);
    } catch (err) {
      await qemu.stop(1000);
      throw err;
    }
    const master = new Service('ssh-master', 'ssh', [...sshOptions(sshPort, workDir), '-o', 'ControlMaster=yes', '-N', 'root@127.0.0.1'], join(workDir, 'ssh.log'));
    const vm = new Vm(k, qemu, sshPort, workDir, master);
    await vm.waitForMaster();
    return vm;
  }

  private async waitForMaster(): Promise<void> {
    await waitUntil('ssh to the guest', 30_000, async () => {
      if (!this.master.running) {
        throw new Error(`ssh to the guest failed: ${this.master.tail}\nconsole:\n${this.qemu.tail.slice(-2000)}`);
      }
      const check = await run('ssh', [...sshOptions(this.sshPort, this.workDir), '-O', 'check', 'root@127.0.0.1'], { timeoutMs: 5000 });
      return check.code === 0;
    }, 100);
  }

  /** Runs a shell command in the guest (busybox sh); never throws for a non-zero exit. */
  async exec(command: string, options: ExecOptions = {}): Promise<RunResult> {
    return run('ssh', [...sshOptions(this.sshPort, this.workDir), '-o', 'ControlMaster=no', 'root@127.0.0.1', command], {
      timeoutMs: options.timeoutMs ?? 120_000,
      input: options.input ?? '',
    });
  }

  /** Runs a command in the guest and returns its stdout; throws with its output if it fails. */
  async run(command: string, options: ExecOptions = {}): Promise<string> {
    const result = await this.exec(command, options);
    if (result.code !== 0) {
      throw new Error(`guest command failed (exit ${result.code}): ${command}\n${result.stderr}${result.stdout}`.slice(0, 8000));
    }
    return result.stdout;
  }

  /**
   * Runs a host program inside the guest, in `chroot /hostroot` (the host's
   * files, the guest's kernel, /proc, /sys and /dev; TMPDIR is writable).
   */
  async execHost(command: string, options: ExecOptions = {}): Promise<RunResult> {
    const quoted = command.replaceAll("'", `'\\''`);
    return this.exec(`chroot /hostroot /usr/bin/env TMPDIR=/run/tmp HOME=/run/tmp PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin sh -c '${quoted}'`, options);
  }

  /** Copies a host file into the guest's writable filesystem. */
  async copyIn(hostPath: string, guestPath: string): Promise<void> {
    const staged = join(this.workDir, 'copy-in');
    copyFileSync(hostPath, staged);
    await this.run(`cat /hostroot${staged} > '${guestPath}'`);
    rmSync(staged);
  }

  /** Reads a guest file, binary-safe (gzip + base64 over the ssh channel). */
  async readFile(guestPath: string): Promise<Buffer> {
    return gunzipSync(Buffer.from(await this.run(`gzip -c '${guestPath}' | base64`, { timeoutMs: 300_000 }), 'base64'));
  }

  /** Where a host path appears in the guest (read-only). */
  hostPath(path: string): string {
    return `/hostroot${path}`;
  }

  /**
   * Makes 127.0.0.1:<returned port> in the guest lead to 127.0.0.1:hostPort on
   * the host (ssh -R over the existing connection); guestPort picks the port
   * (the same on every guest, for a DaemonSet's one address), else any free one.
   */
  async forwardToHost(hostPort: number, guestPort?: number): Promise<number> {
    const out = await runOk('ssh', [...sshOptions(this.sshPort, this.workDir), '-O', 'forward', '-R', `${guestPort ?? 0}:127.0.0.1:${hostPort}`, 'root@127.0.0.1']);
    if (guestPort !== undefined) return guestPort;
    const port = Number(out.trim());
    if (!Number.isInteger(port) || port <= 0) throw new Error(`ssh -R returned no port: ${out}`);
    return port;
  }

  /** Everything the guest printed on its console so far (last 64 KiB). */
  get console(): string {
    return this.qemu.tail;
  }

  /** The kernel log, for checks like "no WARN/BUG/Oops". */
  async dmesg(): Promise<string> {
    return this.run('dmesg');
  }

  /** Powers the guest off and leaves nothing running. */
  /** A shell command that logs a person into the guest (over the running connection). */
  sshCommand(): string {
    return ['ssh', ...sshOptions(this.sshPort, this.workDir), 'root@127.0.0.1'].map((a) => (/^[\w@./:=,-]+$/.test(a) ? a : `'${a}'`)).join(' ');
  }

  async stop(): Promise<void> {
    if (this.qemu.running) {
      await this.exec('poweroff -f', { timeoutMs: 5000 });
    }
    await run('ssh', [...sshOptions(this.sshPort, this.workDir), '-O', 'exit', 'root@127.0.0.1'], { timeoutMs: 5000 });
    await this.master.stop(1000);
    // poweroff -f under TCG takes well under a second; SIGTERM is the fallback.
    const exited = await Promise.race([this.qemu.exit().then(() => true), new Promise((r) => setTimeout(r, 10_000, false))]);
    if (!exited) await this.qemu.stop(2000);
    rmSync(this.workDir, { recursive: true, force: true });
  }
}

function sshOptions(port: number, workDir: string): string[] {
  return [
    '-i', sshKey,
    '-p', String(port),
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'LogLevel=ERROR',
    '-o', `ControlPath=${join(workDir, 'ctl')}`,
    '-o', 'ServerAliveInterval=10',
  ];
}

export type { Flavour, Kernel };
