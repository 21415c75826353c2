// Best effort, for the offender of a violation: what it had open (files and
// sockets) and the file locks it held (/proc/locks). Read after the fact, so
// a task that exited or closed things meanwhile yields less; bounded, so a
// task with a million fds costs no more than MAX_ITEMS reads.
import type { ProcFs } from './procfs.js';
import { TtlCache } from './ttl_cache.js';

export interface Enrichment {
  openFiles: string[];
  sockets: string[];
  heldLocks: string[];
}

const MAX_ITEMS = 32;

/** "socket:[12345]" inode -> "tcp 127.0.0.1:8080 -> 10.0.0.2:5432 ESTABLISHED" from /proc/<pid>/net/*. */
async function socketTable(proc: ProcFs, pid: number): Promise<Map<string, string>> {
  const table = new Map<string, string>();
  const states: Record<string, string> = { '01': 'ESTABLISHED', '02': 'SYN_SENT', '06': 'TIME_WAIT', '08': 'CLOSE_WAIT', '0A': 'LISTEN' };
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6']) {
    const text = await proc.read(`${pid}/net/${proto}`);
    for (const line of (text ?? '').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const [local, remote, st, inode] = [f[1], f[2], f[3], f[9]];
      if (!local || !remote || !st || !inode) continue;
      const state = proto.startsWith('tcp') ? ` ${states[st] ?? st}` : '';
      table.set(inode, `${proto} ${endpoint(local)} -> ${endpoint(remote)}${state}`);
    }
  }
  return table;
}

/** "0100007F:1F90" -> "127.0.0.1:8080"; IPv6 kept as hex words. */
function endpoint(hex: string): string {
  const [addr = '', port = '0'] = hex.split(':');
  const p = parseInt(port, 16);
  if (addr.length === 8) {
    const bytes = addr.match(/../g)?.map((b) => parseInt(b, 16)).reverse() ?? [];
    return `${bytes.join('.')}:${p}`;
  }
  return `[${addr.toLowerCase()}]:${p}`;
}

export async function enrich(proc: ProcFs, pid: number): Promise<Enrichment> {
  const out: Enrichment = { openFiles: [], sockets: [], heldLocks: [] };
  if (pid === 0) return out;
  const fds = (await proc.list(`${pid}/fd`)).slice(0, MAX_ITEMS * 4);
  let sockets: Map<string, string> | undefined;
  for (const fd of fds) {
    if (out.openFiles.length >= MAX_ITEMS && out.sockets.length >= MAX_ITEMS) break;
    const target = await proc.link(`${pid}/fd/${fd}`);
    if (!target) continue;
    const socket = /^socket:\[(\d+)\]$/.exec(target);
    if (socket?.[1]) {
      sockets ??= await socketTable(proc, pid);
      if (out.sockets.length < MAX_ITEMS) out.sockets.push(sockets.get(socket[1]) ?? target);
    } else if (target.startsWith('/') && out.openFiles.length < MAX_ITEMS) {
      out.openFiles.push(target);
    }
  }
  // "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
  for (const line of ((await proc.read('locks')) ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    const holder = f[1] === '->' ? f[5] : f[4];
    if (holder === String(pid) && out.heldLocks.length < MAX_ITEMS) out.heldLocks.push(line.trim());
  }
  return out;
}

/**
 * enrich() per pid at most once a second: a task that violates a thousand
 * times a second costs one walk of its fds, not a thousand. Events may carry
 * an enrichment up to 5 s old while it is re-read: it is best effort.
 */
export class OffenderEnricher {
  private readonly cache: TtlCache<number, Enrichment>;

  constructor(
    private readonly proc: ProcFs,
    options: { maxEntries?: number; ttlMs?: number; staleMs?: number; now?: () => number } = {},
  ) {
    // Frozen: events share it (and its encoding) while it is cached.
    this.cache = new TtlCache(async (pid) => Object.freeze(await enrich(this.proc, pid)), {
      maxEntries: options.maxEntries ?? 1024,
      ttlMs: options.ttlMs ?? 1000,
      staleMs: options.staleMs ?? 4000,
      now: options.now,
    });
  }

  /** The enrichment if it needs no waiting ({ value }), else undefined. */
  cached(pid: number): { value: Enrichment } | undefined {
    return this.cache.peek(pid);
  }

  enrich(pid: number): Promise<Enrichment> {
    return this.cache.get(pid);
  }
}
