// /etc/irqtrace/config.yaml: the standalone agent's traces and where things
// go. Every error names the field, e.g. "traces[1].threshold: ...".
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { isIrqNamePattern } from './irq_names.js';
import { ConfigError, DEFAULT_KERNEL_CONFIG, TRACE_METHOD_CHOICES, oneOf, parseDurationNs } from './kernel_config.js';
import type { BackendChoice, MethodChoice } from './kernel_config.js';
import type { Trace } from './traces.js';

export interface AgentFileConfig {
  node?: string;
  traces: Trace[];
  store?: string;
  spool?: string;
  metricsPort?: number;
  ingest?: { address: string; ca?: string; cert?: string; key?: string; serverName?: string };
}

type Raw = Record<string, unknown>;

function str(v: unknown, field: string): string {
  if (typeof v === 'number') return String(v);
  if (typeof v !== 'string') throw new ConfigError(`${field}: expected a string`);
  return v;
}

function choice<T extends string>(v: unknown, allowed: readonly T[], field: string, fallback: T): T {
  return v === undefined ? fallback : oneOf(str(v, field), allowed, field);
}

function bool(v: unknown, field: string, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new ConfigError(`${field}: expected true or false`);
  return v;
}

function trace(raw: unknown, i: number): Trace {
  const at = `traces[${i}]`;
  if (!raw || typeof raw !== 'object') throw new ConfigError(`${at}: expected a mapping`);
  const t = raw as Raw;
  const name = str(t.name, `${at}.name`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) throw new ConfigError(`${at}.name: '${name}' is not a DNS label (a-z, 0-9, -)`);
  const target = t.target ?? 'all';
  let all = false;
  const irqs: number[] = [];
  const irqNames: string[] = [];
  if (target === 'all') all = true;
  else if (Array.isArray(target) && target.length) {
    target.forEach((item: unknown, k) => {
      if (Number.isInteger(item) && (item as number) >= 0 && (item as number) <= 65535) irqs.push(item as number);
      else if (typeof item === 'string' && isIrqNamePattern(item)) irqNames.push(item);
      else throw new ConfigError(`${at}.target[${k}]: '${String(item)}' is neither an IRQ number nor an IRQ name (as in /proc/interrupts, optionally ending in *)`);
    });
  } else throw new ConfigError(`${at}.target: expected all, or a list of IRQ numbers and names`);
  return {
    name,
    all,
    irqs,
    irqNames,
    thresholdNs: t.threshold === undefined ? DEFAULT_KERNEL_CONFIG.thresholdNs : parseDurationNs(str(t.threshold, `${at}.threshold`), `${at}.threshold`),
    method: choice<MethodChoice>(t.method, TRACE_METHOD_CHOICES, `${at}.method`, 'auto'),
    backend: choice<BackendChoice>(t.backend, ['auto', 'kmod', 'ebpf'], `${at}.backend`, 'auto'),
    periodNs: t.period === undefined ? DEFAULT_KERNEL_CONFIG.periodNs : parseDurationNs(str(t.period, `${at}.period`), `${at}.period`),
    softirqs: bool(t.softirqs, `${at}.softirqs`, false),
    stacks: bool(t.stacks, `${at}.stacks`, true),
    endUnixNs: 0n,
  };
}

export function parseAgentConfig(text: string): AgentFileConfig {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new ConfigError(`not valid YAML: ${(err as Error).message.split('\n')[0] ?? ''}`);
  }
  const raw = (doc ?? {}) as Raw;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('expected a mapping at the top');
  const known = ['node', 'traces', 'store', 'spool', 'metricsPort', 'ingest'];
  for (const key of Object.keys(raw)) if (!known.includes(key)) throw new ConfigError(`${key}: not a setting (${known.join(', ')})`);
  if (raw.traces !== undefined && !Array.isArray(raw.traces)) throw new ConfigError('traces: expected a list');
  const traces = ((raw.traces ?? []) as unknown[]).map(trace);
  const names = new Set<string>();
  for (const [i, t] of traces.entries()) {
    if (names.has(t.name)) throw new ConfigError(`traces[${i}].name: '${t.name}' is used twice`);
    names.add(t.name);
  }
  const port = raw.metricsPort;
  if (port !== undefined && (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535)) throw new ConfigError('metricsPort: expected a port number');
  const ingest = raw.ingest as Raw | undefined;
  return {
    traces,
    ...(raw.node !== undefined ? { node: str(raw.node, 'node') } : {}),
    ...(raw.store !== undefined ? { store: str(raw.store, 'store') } : {}),
    ...(raw.spool !== undefined ? { spool: str(raw.spool, 'spool') } : {}),
    ...(port !== undefined ? { metricsPort: port as number } : {}),
    ...(ingest
      ? {
          ingest: {
            address: str(ingest.address, 'ingest.address'),
            ...(ingest.ca !== undefined ? { ca: str(ingest.ca, 'ingest.ca') } : {}),
            ...(ingest.cert !== undefined ? { cert: str(ingest.cert, 'ingest.cert') } : {}),
            ...(ingest.key !== undefined ? { key: str(ingest.key, 'ingest.key') } : {}),
            ...(ingest.serverName !== undefined ? { serverName: str(ingest.serverName, 'ingest.serverName') } : {}),
          },
        }
      : {}),
  };
}

export function loadAgentConfig(path: string): AgentFileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    return parseAgentConfig(text);
  } catch (err) {
    throw new ConfigError(`${path}: ${(err as Error).message}`);
  }
}
