// One default threshold and period, and one set of bounds, everywhere: the
// uapi header's (LIMITS, checked against the C compiler in uapi_layout.test.ts).
// The IrqTrace API, the operator's node configs, the agent's config file and
// kernel config, and the CLI all take them from there.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LIMITS, durationText, toBigInt } from '@irqtrace/proto';
import { DEFAULT_KERNEL_CONFIG } from '@irqtrace/agent';
import { IrqTraceSpec } from '@irqtrace/operator';
import { parseAgentConfig } from '../../agent/src/config/file.js';
import { traceConfig } from '../../operator/src/model/node_config.js';
import { repoRoot } from '../lib/paths.js';

interface DurationSchema {
  default?: string;
  'x-kubernetes-validations'?: { message: string }[];
}

describe('defaults and bounds', () => {
  const spec = JSON.parse(JSON.stringify(IrqTraceSpec)) as { properties: Record<string, DurationSchema> };

  it('the IrqTrace API fills in and bounds threshold and samplePeriod as the kernel side does', () => {
    expect(spec.properties.threshold?.default).toBe(durationText(LIMITS.thresholdNs.default));
    expect(spec.properties.samplePeriod?.default).toBe(durationText(LIMITS.periodNs.default));
    expect(spec.properties.threshold?.['x-kubernetes-validations']?.[0]?.message).toBe(`must be from ${durationText(LIMITS.thresholdNs.min)} to ${durationText(LIMITS.thresholdNs.max)}`);
    expect(spec.properties.samplePeriod?.['x-kubernetes-validations']?.[0]?.message).toBe(`must be from ${durationText(LIMITS.periodNs.min)} to ${durationText(LIMITS.periodNs.max)}`);
  });

  it('a trace that leaves them out gets the same values in its node config, the agent file and the kernel config', () => {
    const c = traceConfig({ apiVersion: 'irqtrace.io/v1alpha1', kind: 'IrqTrace', metadata: { name: 't' }, spec: { target: { all: true } } });
    expect([toBigInt(c.thresholdNs), toBigInt(c.samplePeriodNs)]).toEqual([LIMITS.thresholdNs.default, LIMITS.periodNs.default]);
    const file = parseAgentConfig('traces:\n  - name: t\n').traces[0];
    expect([file?.thresholdNs, file?.periodNs]).toEqual([LIMITS.thresholdNs.default, LIMITS.periodNs.default]);
    expect([DEFAULT_KERNEL_CONFIG.thresholdNs, DEFAULT_KERNEL_CONFIG.periodNs]).toEqual([LIMITS.thresholdNs.default, LIMITS.periodNs.default]);
  });

  it('irqtrace record defaults to them', () => {
    const help = execFileSync(process.execPath, [join(repoRoot, 'agent', 'dist', 'cli', 'main.js'), 'record', '--help'], { encoding: 'utf8' }).replace(/\s+/g, ' ');
    expect(help).toContain(`(default: "${durationText(LIMITS.thresholdNs.default)}")`);
    expect(help).toMatch(new RegExp(`--period <duration>[^(]*\\(default: "${durationText(LIMITS.periodNs.default)}"\\)`));
  });

  it('writes durations exactly, in the largest unit that holds them whole', () => {
    expect([1000n, 60_000_000_000n, 1_000_000n, 100_000n, 1_500_000n, 7n].map(durationText)).toEqual(['1us', '60s', '1ms', '100us', '1500us', '7ns']);
  });
});
