// Smoke test of the kernel-guest rig, on both kernel flavours.
import { cpSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, scratchDir } from '../lib/paths.js';
import { run } from '../lib/process.js';
import { buildModule, hasConfig } from './kernels.js';
import { Vm } from './vm.js';
import type { Flavour } from './vm.js';

describe.each<Flavour>(['debian', 'tracing'])('a %s kernel guest', (flavour) => {
  let vm: Vm;
  let moduleDir: string;

  beforeAll(async () => {
    vm = await Vm.boot({ flavour });
    moduleDir = scratchDir('hello');
    cpSync(join(repoRoot, 'test/vm/fixtures/hello'), moduleDir, { recursive: true });
    await buildModule(vm.kernel, moduleDir);
  });

  afterAll(async () => {
    await vm.stop();
  });

  it('runs the kernel it was asked for', async () => {
    expect((await vm.run('uname -r')).trim()).toBe(vm.kernel.release);
  });

  it('reports exit codes and separates stdout from stderr', async () => {
    const result = await vm.exec('echo out; echo err >&2; exit 7');
    expect(result).toEqual({ code: 7, stdout: 'out\n', stderr: 'err\n' });
  });

  it('loads and unloads a module built against its tree, and shows its output', async () => {
    const ko = vm.hostPath(join(moduleDir, 'irqtrace_hello.ko'));
    await vm.run(`insmod ${ko} greeting=bonjour-${flavour}`);
    expect(await vm.run('cat /sys/module/irqtrace_hello/parameters/greeting')).toBe(`bonjour-${flavour}\n`);
    await vm.run('rmmod irqtrace_hello');
    const log = await vm.dmesg();
    expect(log).toContain(`irqtrace_hello: bonjour-${flavour} from ${vm.kernel.release}`);
    expect(log).toContain('irqtrace_hello: goodbye');
    expect(await vm.exec('test -d /sys/module/irqtrace_hello')).toMatchObject({ code: 1 });
  });

  it('copies files in', async () => {
    const dir = scratchDir('copy');
    const file = join(dir, 'payload');
    await run('sh', ['-c', `head -c 100000 /dev/urandom > ${file}`]);
    await vm.copyIn(file, '/tmp/payload');
    const [host, guest] = await Promise.all([run('md5sum', [file]), vm.run('md5sum /tmp/payload')]);
    expect(guest.split(' ')[0]).toBe(host.stdout.split(' ')[0]);
  });

  it('lets a guest process reach a port on the host loopback', async () => {
    let server: Server | undefined;
    const hostPort = await new Promise<number>((resolve) => {
      server = createServer((socket) => {
        socket.end(`hello guest, from host pid ${process.pid}\n`);
      }).listen(0, '127.0.0.1', () => {
        const address = server?.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
    try {
      const guestPort = await vm.forwardToHost(hostPort);
      expect(await vm.run(`nc 127.0.0.1 ${guestPort} </dev/null`)).toBe(`hello guest, from host pid ${process.pid}\n`);
    } finally {
      server?.close();
    }
  });

  it('runs host programs (node) against the guest kernel', async () => {
    const out = await vm.execHost(`node -e "console.log(process.version, require('os').release())"`);
    expect(out.stderr).toBe('');
    expect(out.stdout.trim()).toBe(`${process.version} ${vm.kernel.release}`);
  });

  if (flavour === 'tracing') {
    it('has the preemptirq tracepoints the exact method needs', async () => {
      expect(hasConfig(vm.kernel, 'CONFIG_TRACE_IRQFLAGS')).toBe(true);
      expect(await vm.exec('test -d /sys/kernel/tracing/events/preemptirq/irq_disable')).toMatchObject({ code: 0 });
      expect(await vm.exec('test -d /sys/kernel/tracing/events/preemptirq/irq_enable')).toMatchObject({ code: 0 });
    });
  } else {
    it('is a stock kernel: kprobes but no preemptirq tracepoints', async () => {
      expect(hasConfig(vm.kernel, 'CONFIG_TRACE_IRQFLAGS')).toBe(false);
      expect(hasConfig(vm.kernel, 'CONFIG_KPROBES')).toBe(true);
      expect(await vm.exec('test -d /sys/kernel/tracing/events/preemptirq')).toMatchObject({ code: 1 });
      expect(await vm.exec('test -d /sys/kernel/tracing/events/irq')).toMatchObject({ code: 0 });
    });
  }
});

describe('stopping a guest', () => {
  it('leaves no QEMU process behind', async () => {
    const vm = await Vm.boot({ flavour: 'debian' });
    const pidBefore = (await run('pgrep', ['-f', vm.kernel.vmlinux])).stdout.trim();
    expect(pidBefore).not.toBe('');
    await vm.stop();
    expect((await run('pgrep', ['-f', vm.kernel.vmlinux])).stdout.trim()).toBe('');
    expect(existsSync(vm.kernel.vmlinux)).toBe(true);
  });
});
