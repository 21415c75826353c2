// Task attribution cache and offender enrichment over a /proc of samples,
// and the real /proc of this process.
import { mkdirSync, mkdtempSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CgroupIndex, TaskAttributor, enrich, procFs } from '@irqtrace/agent';

const UID = '6a3c1f0e-3b2d-4c7a-9f1e-2d4b5c6a7e8f';
const ID = 'ab'.repeat(32);

/** A /proc with one containerised task (pid 4242) holding files, a socket and a lock. */
function sampleProc(): string {
  const root = mkdtempSync(join(tmpdir(), 'irqtrace-proc-'));
  const pid = join(root, '4242');
  mkdirSync(join(pid, 'fd'), { recursive: true });
  mkdirSync(join(pid, 'net'));
  writeFileSync(join(pid, 'cgroup'), `0::/kubepods/besteffort/pod${UID}/${ID}\n`);
  symlinkSync('/var/lib/db/data.bin', join(pid, 'fd', '3'));
  symlinkSync('socket:[777]', join(pid, 'fd', '4'));
  symlinkSync('pipe:[9]', join(pid, 'fd', '5'));
  writeFileSync(
    join(pid, 'net', 'tcp'),
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n' +
      '   0: 0100007F:1F90 0200000A:1538 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1\n',
  );
  writeFileSync(join(root, 'locks'), '1: POSIX  ADVISORY  WRITE 4242 08:01:5678 0 EOF\n2: FLOCK  ADVISORY  WRITE 99 08:01:1 0 EOF\n');
  return root;
}

describe('task attribution', () => {
  it('attributes a pid to its pod and container, once per TTL', async () => {
    const root = sampleProc();
    let reads = 0;
    const proc = procFs(root);
    const counting = { ...proc, read: async (p: string) => { reads++; return proc.read(p); } };
    let now = 0;
    const tasks = new TaskAttributor(counting, { ttlMs: 1000, now: () => now });
    expect(await tasks.attribute(4242)).toMatchObject({ podUid: UID, containerId: ID, qos: 'besteffort' });
    await tasks.attribute(4242);
    expect(reads).toBe(1);
    now = 5000;
    await tasks.attribute(4242);
    expect(reads).toBe(2);
    expect(await tasks.attribute(0)).toBeUndefined();
    expect(await tasks.attribute(31337)).toBeUndefined();
    expect(tasks.missing).toBe(1);
  });

  it('finds an exited task by the cgroup id its record carries', async () => {
    const cgroups = mkdtempSync(join(tmpdir(), 'irqtrace-cgroup-'));
    const pod = join(cgroups, 'kubepods', 'burstable', `pod${UID}`, ID);
    mkdirSync(pod, { recursive: true });
    let now = 0;
    const index = new CgroupIndex(cgroups, 1000, () => now);
    const tasks = new TaskAttributor(procFs(sampleProc()), {}, index);
    const id = statSync(pod, { bigint: true }).ino;
    expect(await tasks.attribute(31337, id)).toMatchObject({ path: `/kubepods/burstable/pod${UID}/${ID}`, podUid: UID, containerId: ID });
    expect(await index.pathOf(statSync(cgroups, { bigint: true }).ino)).toBe('/');
    // A cgroup made after the walk is found by the next walk, not before a second has passed.
    const later = join(cgroups, 'system.slice');
    mkdirSync(later);
    const laterId = statSync(later, { bigint: true }).ino;
    expect(await index.pathOf(laterId)).toBeUndefined();
    now = 2000;
    expect(await index.pathOf(laterId)).toBe('/system.slice');
    expect(index.walks).toBe(2);
  });

  it('stays within its bound', async () => {
    const tasks = new TaskAttributor(procFs(sampleProc()), { maxEntries: 3 });
    for (let pid = 1; pid <= 10; pid++) await tasks.attribute(pid);
    expect(tasks.size).toBe(3);
  });

  it('reads this very process from the real /proc', async () => {
    const mine = await new TaskAttributor(procFs()).attribute(process.pid);
    expect(mine?.path).toMatch(/^\//);
  });
});

describe('offender enrichment', () => {
  it('lists open files, sockets with endpoints, and held file locks', async () => {
    const e = await enrich(procFs(sampleProc()), 4242);
    expect(e.openFiles).toEqual(['/var/lib/db/data.bin']);
    expect(e.sockets).toEqual(['tcp 127.0.0.1:8080 -> 10.0.0.2:5432 ESTABLISHED']);
    expect(e.heldLocks).toEqual(['1: POSIX  ADVISORY  WRITE 4242 08:01:5678 0 EOF']);
  });

  it('yields nothing, without failing, for a task that is gone', async () => {
    expect(await enrich(procFs(sampleProc()), 5)).toEqual({ openFiles: [], sockets: [], heldLocks: [] });
  });
});
