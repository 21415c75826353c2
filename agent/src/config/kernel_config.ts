// What the kernel side is asked to measure: the module's parameters and the
// eBPF loader's settings are the same set, written the same way. Bounds and
// defaults are the uapi header's (LIMITS).
import { LIMITS, durationText } from '@irqtrace/proto/limits';
import { Method } from '../records/layout.js';

/**
 * The irqs-off methods by name: the one list of them for the module parameter, the eBPF
 * loader's setting, the config file, the command line and the states the agent reports.
 */
export const METHOD_NAMES = { [Method.Exact]: 'exact', [Method.Sampled]: 'sampled', [Method.Hybrid]: 'hybrid' } as const satisfies Record<Method, string>;
export type MethodName = (typeof METHOD_NAMES)[Method];

const METHODS_BY_NAME = new Map<string, Method>(Object.values(Method).filter((m): m is Method => typeof m === 'number').map((m) => [METHOD_NAMES[m], m]));

/** The method of that name (a state's, a loader's answer), or undefined (off, unknown). */
export function methodNamed(name: string): Method | undefined {
  return METHODS_BY_NAME.get(name);
}

/** auto: exact where the kernel has the preemptirq tracepoints, else hybrid where the module can run it, else sampled. off: IRQ lines only. */
export type MethodChoice = 'auto' | MethodName | 'off';
/** What a trace may ask for (off is the merged config's, for IRQ lines alone). */
export const TRACE_METHOD_CHOICES: readonly MethodChoice[] = ['auto', ...Object.values(METHOD_NAMES)];
/** What the record command may ask for: a trace's choices, or off (IRQ lines alone). */
export const RECORD_METHOD_CHOICES: readonly MethodChoice[] = [...TRACE_METHOD_CHOICES, 'off'];

export type BackendChoice = 'auto' | 'kmod' | 'ebpf';

export interface KernelConfig {
  method: MethodChoice;
  thresholdNs: bigint;
  periodNs: bigint;
  stacks: boolean;
  idle: boolean;
  softirqs: boolean;
  /** 'all' or a CPU list like "0-3,6". */
  cpus: string;
  /** IRQ lines for irq-line tracing: 'none', 'all' or numbers. */
  irqs: 'none' | 'all' | number[];
}

export const DEFAULT_KERNEL_CONFIG: KernelConfig = {
  method: 'auto',
  thresholdNs: LIMITS.thresholdNs.default,
  periodNs: LIMITS.periodNs.default,
  stacks: true,
  idle: false,
  softirqs: false,
  cpus: 'all',
  irqs: 'none',
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** value, if it is one of allowed; a ConfigError naming the setting otherwise. */
export function oneOf<T extends string>(value: string, allowed: readonly T[], setting: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new ConfigError(`${setting}: '${value}' is not one of ${allowed.join(', ')}`);
  return value as T;
}

const UNITS: Record<string, bigint> = { ns: 1n, us: 1_000n, µs: 1_000n, ms: 1_000_000n, s: 1_000_000_000n };

/** "500us", "1.5ms", "2s", "100000" (ns) -> ns; ConfigError naming the setting otherwise. */
export function parseDurationNs(text: string, setting: string): bigint {
  const m = /^(\d+)(?:\.(\d+))?\s*(ns|us|µs|ms|s)?$/.exec(text.trim());
  if (!m) throw new ConfigError(`${setting}: '${text}' is not a duration like 500us, 2ms or 100000 (ns)`);
  const unit = UNITS[m[3] ?? 'ns'] ?? 1n;
  const frac = m[2] ?? '';
  const scale = 10n ** BigInt(frac.length);
  const ns = (BigInt(m[1] ?? '0') * scale + BigInt(frac || '0')) * unit;
  if (ns % scale !== 0n) throw new ConfigError(`${setting}: '${text}' is finer than a nanosecond`);
  return ns / scale;
}

/** Checks the ranges the kernel side enforces, so that a bad value fails here with a clear message. */
export function validateKernelConfig(c: KernelConfig): KernelConfig {
  const within = (setting: string, ns: bigint, l: { min: bigint; max: bigint }): void => {
    if (ns < l.min || ns > l.max) throw new ConfigError(`${setting}: ${ns} ns is outside ${durationText(l.min)}..${durationText(l.max)}`);
  };
  within('threshold', c.thresholdNs, LIMITS.thresholdNs);
  within('period', c.periodNs, LIMITS.periodNs);
  if (c.cpus !== 'all' && !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(c.cpus)) throw new ConfigError(`cpus: '${c.cpus}' is not 'all' or a list like 0-3,6`);
  if (Array.isArray(c.irqs) && c.irqs.some((n) => !Number.isInteger(n) || n < 0 || n > 65535)) {
    throw new ConfigError(`irqs: ${c.irqs.join(',')} has a value that is not an IRQ number`);
  }
  return c;
}

/** The settings as key=value pairs: module parameters and loader settings alike. */
export function kernelSettings(c: KernelConfig): Record<string, string> {
  return {
    method: c.method,
    threshold_ns: String(c.thresholdNs),
    period_ns: String(c.periodNs),
    stacks: c.stacks ? '1' : '0',
    idle: c.idle ? '1' : '0',
    softirqs: c.softirqs ? '1' : '0',
    cpus: c.cpus,
    irqs: Array.isArray(c.irqs) ? (c.irqs.length ? c.irqs.join(',') : 'none') : c.irqs,
  };
}
