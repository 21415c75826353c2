// The driver loader's decisions (agent/src/driver/loader.ts) on a fake node:
// temporary /sys, /proc and /lib/modules trees, and make/insmod/rmmod that
// record their calls (make "builds" a real ELF file with a .modinfo section, as
// kbuild would). What runs in a real kernel is the e2e's: this is the logic.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Exec } from '../../agent/src/backend/exec.js';
import { KmodBackend } from '../../agent/src/backend/kmod.js';
import { buildFailure, linkHostKbuild } from '../../agent/src/driver/build.js';
import { loadDriver } from '../../agent/src/driver/loader.js';
import type { DriverOptions } from '../../agent/src/driver/loader.js';
import { kernelBuildId, moduleInfo } from '../../agent/src/driver/module_file.js';
import { writeDriverState } from '../../agent/src/driver/state.js';
import { ABI_VERSION } from '../../agent/src/records/layout.js';

const REL = '6.1.0-test';
const VERMAGIC = `${REL} SMP preempt mod_unload `;

/** A minimal ELF64 relocatable file with .modinfo holding these strings, as modpost leaves a module. */
function elfWithModinfo(fields: Record<string, string>): Buffer {
  const modinfo = Buffer.from(Object.entries(fields).map(([k, v]) => `${k}=${v}\0`).join(''), 'latin1');
  const shstrtab = Buffer.from('\0.modinfo\0.shstrtab\0', 'latin1');
  const header = Buffer.alloc(64);
  header.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  header.writeUInt16LE(1, 0x10); // ET_REL
  header.writeUInt16LE(62, 0x12); // x86-64
  const dataAt = 64;
  const shoff = dataAt + modinfo.length + shstrtab.length;
  header.writeBigUInt64LE(BigInt(shoff), 0x28);
  header.writeUInt16LE(64, 0x34);
  header.writeUInt16LE(64, 0x3a);
  header.writeUInt16LE(3, 0x3c);
  header.writeUInt16LE(2, 0x3e);
  const section = (name: number, type: number, offset: number, size: number) => {
    const s = Buffer.alloc(64);
    s.writeUInt32LE(name, 0);
    s.writeUInt32LE(type, 4);
    s.writeBigUInt64LE(BigInt(offset), 0x18);
    s.writeBigUInt64LE(BigInt(size), 0x20);
    return s;
  };
  return Buffer.concat([header, modinfo, shstrtab, section(0, 0, 0, 0), section(1, 1, dataAt, modinfo.length), section(10, 3, dataAt + modinfo.length, shstrtab.length)]);
}

/** /sys/kernel/notes with one GNU build id note (and a Xen-like note before it). */
function notes(id: string): Buffer {
  const note = (name: string, type: number, desc: Buffer) => {
    const n = Buffer.from(name, 'latin1');
    const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
    const head = Buffer.alloc(12);
    head.writeUInt32LE(n.length, 0);
    head.writeUInt32LE(desc.length, 4);
    head.writeUInt32LE(type, 8);
    return Buffer.concat([head, pad(n), pad(desc)]);
  };
  return Buffer.concat([note('Xen\0', 5, Buffer.from('xen-3.0')), note('GNU\0', 3, Buffer.from(id, 'hex'))]);
}

interface FakeNode {
  options: DriverOptions & { exec: Exec };
  calls: string[];
  root: string;
  /** What the next build's .modinfo says (a kernel of another release, a compiler error). */
  next: { fields?: Record<string, string>; fail?: string };
  loadedAbi: (abi: string | undefined) => void;
}

function fakeNode(): FakeNode {
  const root = mkdtempSync(join(tmpdir(), 'driver-'));
  const source = join(root, 'usr/lib/irqtrace/kmod');
  mkdirSync(join(source, 'selftest'), { recursive: true });
  writeFileSync(join(source, 'main.c'), 'int x;\n');
  writeFileSync(join(source, 'selftest/selftest.c'), 'int y;\n');
  mkdirSync(join(root, 'lib/modules', REL, 'build'), { recursive: true });
  writeFileSync(join(root, 'lib/modules', REL, 'build/Makefile'), '');
  mkdirSync(join(root, 'sys/kernel'), { recursive: true });
  writeFileSync(join(root, 'sys/kernel/notes'), notes('0123456789abcdef0123456789abcdef01234567'));
  mkdirSync(join(root, 'proc/sys/kernel'), { recursive: true });
  writeFileSync(join(root, 'proc/sys/kernel/modules_disabled'), '0\n');
  const calls: string[] = [];
  const next: FakeNode['next'] = {};
  const loadedAbi = (abi: string | undefined) => {
    rmSync(join(root, 'sys/module/irqtrace'), { recursive: true, force: true });
    if (abi === undefined) return;
    mkdirSync(join(root, 'sys/module/irqtrace'), { recursive: true });
    writeFileSync(join(root, 'sys/module/irqtrace/version'), `${abi}\n`);
  };
  const exec: Exec = (command, args) => {
    calls.push(`${command} ${args.join(' ')}`);
    if (command === 'make') {
      if (next.fail) return Promise.resolve({ code: 2, stdout: '', stderr: next.fail });
      const dir = (args.find((a) => a.startsWith('M=')) ?? '').slice(2);
      writeFileSync(join(dir, 'irqtrace.ko'), elfWithModinfo(next.fields ?? { version: String(ABI_VERSION), name: 'irqtrace', vermagic: VERMAGIC }));
    }
    if (command === 'insmod') loadedAbi(moduleInfo(readFileSync(args[0] ?? ''))?.version);
    if (command === 'rmmod') loadedAbi(undefined);
    return Promise.resolve({ code: 0, stdout: '', stderr: '' });
  };
  const options = {
    source,
    cacheDir: join(root, 'var/lib/irqtrace/modules'),
    kernelRelease: REL,
    sysRoot: join(root, 'sys'),
    procRoot: join(root, 'proc'),
    modulesRoot: join(root, 'lib/modules'),
    scratch: root,
    exec,
  };
  return { options, calls, root, next, loadedAbi };
}

const makes = (n: FakeNode) => n.calls.filter((c) => c.startsWith('make')).length;
const insmods = (n: FakeNode) => n.calls.filter((c) => c.startsWith('insmod'));

describe('reading module files and kernel notes', () => {
  it('reads vermagic, version and name from .modinfo; a file cut short is not a module', () => {
    const ko = elfWithModinfo({ name: 'irqtrace', version: '2', vermagic: VERMAGIC, srcversion: 'ABC' });
    expect(moduleInfo(ko)).toEqual({ name: 'irqtrace', version: '2', vermagic: VERMAGIC, srcversion: 'ABC' });
    for (const cut of [0, 10, 64, ko.length - 1]) expect(moduleInfo(ko.subarray(0, cut)), `cut at ${cut}`).toBeUndefined();
    expect(moduleInfo(Buffer.from('not an elf file at all, but long enough to have a header of sixty-four bytes'))).toBeUndefined();
  });

  it("finds the kernel's GNU build id among its notes", () => {
    expect(kernelBuildId(notes('00ff'))).toBe('00ff');
    expect(kernelBuildId(Buffer.alloc(0))).toBeUndefined();
    expect(kernelBuildId(notes('00ff').subarray(0, 30))).toBeUndefined();
  });

  it("says a failed build's compiler errors, else make's last lines", () => {
    const gcc = "make[1]: Entering directory\n/tmp/k/main.c:3:1: error: unknown type name 'foo'\n/tmp/k/main.c:9:2: error: expected ';'\nmake[2]: *** [scripts/Makefile.build:250: main.o] Error 1\n";
    expect(buildFailure(gcc)).toBe("/tmp/k/main.c:3:1: error: unknown type name 'foo' | /tmp/k/main.c:9:2: error: expected ';'");
    expect(buildFailure('one\ntwo\nthree\nfour\nfive\n')).toBe('two | three | four | five');
  });
});

describe('the driver loader', () => {
  it('builds once for a kernel and source, caches it, and hands the cached module over after; loads nothing itself', async () => {
    const n = fakeNode();
    const first = await loadDriver(n.options);
    expect(first).toMatchObject({ ok: true, how: 'built', release: REL, buildId: '0123456789abcdef0123456789abcdef01234567' });
    if (!first.ok || !first.module) throw new Error('a module');
    expect(first.module).toMatch(new RegExp(`/var/lib/irqtrace/modules/${REL}/0123456789abcdef0123-[0-9a-f]{16}/irqtrace.ko$`));
    const manifest = JSON.parse(readFileSync(join(dirname(first.module), 'manifest.json'), 'utf8')) as { vermagic: string; abi: string };
    expect(manifest).toMatchObject({ vermagic: VERMAGIC, abi: String(ABI_VERSION) });
    // The build's scratch copy is gone; only the cache keeps the module.
    expect(readdirSync(n.root).filter((e) => e.startsWith('irqtrace-kmod-'))).toEqual([]);

    const second = await loadDriver(n.options);
    expect(second).toMatchObject({ ok: true, how: 'cached', module: first.module });
    expect(makes(n)).toBe(1);
    // The agent loads it: a pod that goes before its agent starts leaves nothing loaded.
    expect(insmods(n)).toEqual([]);
  });

  it('keeps a module loaded with its ABI, and unloads one of another ABI before loading its own', async () => {
    const n = fakeNode();
    n.loadedAbi(String(ABI_VERSION));
    expect(await loadDriver(n.options)).toMatchObject({ ok: true, how: 'already loaded', module: null });
    expect(n.calls).toEqual([]);
    n.loadedAbi('1');
    expect(await loadDriver(n.options)).toMatchObject({ ok: true, how: 'built' });
    expect(n.calls.map((c) => c.split(' ')[0])).toEqual(['rmmod', 'make']);
    // With a checked file, a module of its ABI loaded meanwhile is handed over with the file to load again.
    n.loadedAbi(String(ABI_VERSION));
    expect(await loadDriver(n.options)).toMatchObject({ ok: true, how: 'already loaded', module: expect.stringMatching(/irqtrace\.ko$/) as unknown });
  });

  for (const [what, spoil] of [
    ['cut short', (ko: string) => { truncateSync(ko, 100); }],
    ['changed after it was built', (ko: string) => { writeFileSync(ko, elfWithModinfo({ version: String(ABI_VERSION), vermagic: VERMAGIC, name: 'evil' })); }],
    ['without its manifest', (ko: string) => { rmSync(join(dirname(ko), 'manifest.json')); }],
  ] as const) {
    it(`throws away a cached module ${what}, and builds another: never loads it`, async () => {
      const n = fakeNode();
      const first = await loadDriver(n.options);
      if (!first.ok || !first.module) throw new Error('a module');
      spoil(first.module);
      const second = await loadDriver(n.options);
      expect(second).toMatchObject({ ok: true, how: 'built', module: first.module });
      expect(makes(n)).toBe(2);
      // What is handed over is the new build, whole.
      expect(moduleInfo(readFileSync(first.module))?.name).toBe('irqtrace');
      expect(await loadDriver(n.options)).toMatchObject({ how: 'cached' });
    });
  }

  it('refuses a module whose vermagic is of another kernel, and says so', async () => {
    const n = fakeNode();
    n.next.fields = { version: String(ABI_VERSION), name: 'irqtrace', vermagic: '6.1.0-other SMP mod_unload ' };
    const state = await loadDriver(n.options);
    expect(state).toMatchObject({ ok: false });
    expect(state.ok ? '' : state.reason).toMatch(/does not fit this kernel: vermagic '6\.1\.0-other SMP mod_unload ' is not of kernel 6\.1\.0-test/);
    expect(insmods(n)).toEqual([]);
  });

  it('builds separately for other module source (an upgrade), and not for other files', async () => {
    const n = fakeNode();
    const first = await loadDriver(n.options);
    writeFileSync(join(n.options.source, 'selftest/selftest.c'), 'int z;\n');
    expect(await loadDriver(n.options)).toMatchObject({ how: 'cached', module: first.ok ? first.module : '' });
    writeFileSync(join(n.options.source, 'main.c'), 'int x2;\n');
    const third = await loadDriver(n.options);
    expect(third).toMatchObject({ how: 'built' });
    expect(third.ok && third.module).not.toBe(first.ok && first.module);
  });

  it('says why there is no module: loading disabled, lockdown, no headers, a compiler error', async () => {
    const reasonOf = async (n: FakeNode) => {
      const s = await loadDriver(n.options);
      return s.ok ? `loaded: ${s.how}` : s.reason;
    };
    let n = fakeNode();
    writeFileSync(join(n.root, 'proc/sys/kernel/modules_disabled'), '1\n');
    expect(await reasonOf(n)).toBe('module loading is disabled on this node (kernel.modules_disabled=1)');
    n = fakeNode();
    mkdirSync(join(n.root, 'sys/kernel/security'));
    writeFileSync(join(n.root, 'sys/kernel/security/lockdown'), 'none [integrity] confidentiality\n');
    expect(await reasonOf(n)).toBe('the kernel is locked down (integrity): it loads no unsigned module');
    n = fakeNode();
    rmSync(join(n.root, 'lib/modules', REL, 'build'), { recursive: true });
    expect(await reasonOf(n)).toBe(`no kernel headers at ${join(n.root, 'lib/modules', REL, 'build')} to build the module against (install the headers of ${REL} on the node)`);
    n = fakeNode();
    n.next.fail = "main.c:1:1: error: unknown type name 'u128'\nmake: *** Error 2\n";
    expect(await reasonOf(n)).toMatch(/^building irqtrace\.ko against .* failed: main\.c:1:1: error: unknown type name 'u128'$/);
    expect(insmods(n)).toEqual([]);
  });
});

describe("the agent with the loader's state", () => {
  it("goes to eBPF with the loader's reason, and loads the loader's module when none is loaded", async () => {
    const n = fakeNode();
    const state = join(n.root, 'driver.json');
    await writeDriverState(state, { ok: false, reason: 'module loading is disabled on this node (kernel.modules_disabled=1)', release: REL, buildId: 'x', sourceDigest: 'y', seconds: 0 });
    const sink = { record: () => undefined, failed: () => undefined };
    const backend = (exec: Exec) => new KmodBackend({ driverState: state, sysRoot: n.options.sysRoot, devRoot: join(n.root, 'dev'), exec });
    await expect(backend(n.options.exec).start({} as never, sink)).rejects.toThrow('module loading is disabled on this node (kernel.modules_disabled=1)');
    await expect(new KmodBackend({ driverState: join(n.root, 'none.json') }).start({} as never, sink)).rejects.toThrow(/the driver loader did not run/);
    // The loader's checked file: the agent loads it (and again after it unloaded it, its traces gone).
    const loaded = await loadDriver(n.options);
    await writeDriverState(state, loaded);
    const calls = n.calls.length;
    // No /dev/irqtrace in this fake: the start fails after insmod, and rmmods what it loaded.
    await expect(backend(n.options.exec).start({ irqsOff: { method: 'auto' } } as never, sink)).rejects.toThrow(/^loaded, but no .*\/dev\/irqtrace/);
    expect(n.calls.slice(calls).map((c) => c.split(' ')[0])).toEqual(['insmod', 'rmmod']);
  });
});

describe('linkHostKbuild', () => {
  it("links the host's kbuild trees, keeps the image's own, ignores the rest", async () => {
    const root = mkdtempSync(join(tmpdir(), 'kbuild-'));
    const host = join(root, 'host/usr/lib');
    const own = join(root, 'usr/lib');
    mkdirSync(join(host, 'linux-kbuild-6.1/scripts'), { recursive: true });
    mkdirSync(join(host, 'linux-kbuild-6.2'), { recursive: true });
    mkdirSync(join(host, 'x86_64-linux-gnu'), { recursive: true });
    mkdirSync(join(own, 'linux-kbuild-6.2'), { recursive: true });
    expect(await linkHostKbuild(host, own)).toEqual(['linux-kbuild-6.1']);
    expect(readlinkSync(join(own, 'linux-kbuild-6.1'))).toBe(join(host, 'linux-kbuild-6.1'));
    expect(await linkHostKbuild(host, own)).toEqual([]);
    expect(await linkHostKbuild('/nonexistent', own)).toEqual([]);
  });
});
