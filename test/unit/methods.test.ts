// The irqs-off methods are one list: what the IrqTrace API allows reaches the
// agent as itself, and the config file, the command line and the module
// parameter take the same names. Traces asking for different methods merge to
// the most precise one a node can run; the eBPF backend refuses hybrid itself.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { irqtrace } from '@irqtrace/proto';
import { DEFAULT_KERNEL_CONFIG, EbpfBackend, Method, kernelSettings, mergeTraces, traceFromProto, traceToProto } from '@irqtrace/agent';
import type { Trace } from '@irqtrace/agent';
import { IrqTraceSpec } from '@irqtrace/operator';
import { parseAgentConfig } from '../../agent/src/config/file.js';
import { METHOD_NAMES, TRACE_METHOD_CHOICES, methodNamed } from '../../agent/src/config/kernel_config.js';
import { runningMethod } from '../../agent/src/backend/kmod.js';
import { configFromOptions } from '../../agent/src/cli/record.js';
import type { RecordOptions } from '../../agent/src/cli/record.js';
import { traceConfig } from '../../operator/src/model/node_config.js';
import { repoRoot } from '../lib/paths.js';

const pb = irqtrace.v1;
const base: Trace = { name: 'x', all: true, irqs: [], thresholdNs: 1_000_000n, method: 'auto', backend: 'auto', periodNs: 1_000_000n, softirqs: false, stacks: false, endUnixNs: 0n };
const spec = JSON.parse(JSON.stringify(IrqTraceSpec)) as { properties: { method: { enum: string[] } } };

describe('the irqs-off methods', () => {
  it('are the same set in the API, the agent config file and the command line, each reaching the agent as itself', () => {
    expect([...spec.properties.method.enum].sort()).toEqual([...TRACE_METHOD_CHOICES].sort());
    expect(TRACE_METHOD_CHOICES).toContain('hybrid');
    for (const method of spec.properties.method.enum) {
      const config = traceConfig({ apiVersion: 'irqtrace.io/v1alpha1', kind: 'IrqTrace', metadata: { name: 't' }, spec: { target: { all: true }, method: method as 'auto' } });
      const trace = traceFromProto(pb.TraceConfig.decode(pb.TraceConfig.encode(config).finish()));
      expect(trace.method).toBe(method);
      expect(traceFromProto(traceToProto(trace)).method).toBe(method);
      expect(parseAgentConfig(`traces:\n  - name: t\n    method: ${method}\n`).traces[0]?.method).toBe(method);
    }
    const help = execFileSync(process.execPath, [join(repoRoot, 'agent', 'dist', 'cli', 'main.js'), 'record', '--help'], { encoding: 'utf8' }).replace(/\s+/g, ' ');
    expect(help).toMatch(/choices: "auto", "exact", "sampled", "hybrid", "off"/);
  });

  it('are named the same in the module parameter, the counters and the reported state', () => {
    const options = { target: 'all', threshold: '1ms', method: 'hybrid', backend: 'kmod', period: '1ms', cpus: 'all', stacks: true, softirqs: false, json: false } as RecordOptions;
    expect(kernelSettings(configFromOptions(options).cfg).method).toBe('hybrid');
    expect(kernelSettings({ ...DEFAULT_KERNEL_CONFIG, method: 'hybrid' }).method).toBe('hybrid');
    for (const m of [Method.Exact, Method.Sampled, Method.Hybrid]) {
      expect(methodNamed(METHOD_NAMES[m])).toBe(m);
      expect(runningMethod([{ irqsOffMethod: m } as never])).toBe(METHOD_NAMES[m]);
    }
    expect(methodNamed('off')).toBeUndefined();
  });

  it('merge to the most precise asked that a node can run: exact > hybrid > sampled', () => {
    const merged = (...traces: Partial<Trace>[]) => mergeTraces(traces.map((t, i) => ({ ...base, name: `t${i}`, ...t })))?.kernel.method;
    expect(merged({ method: 'hybrid' }, { method: 'auto' })).toBe('hybrid');
    // Hybrid samples what sampled does, and times some ends exactly besides.
    expect(merged({ method: 'hybrid' }, { method: 'sampled' })).toBe('hybrid');
    // Exact needs the tracepoints: with another method, the node decides (auto).
    expect(merged({ method: 'exact' }, { method: 'hybrid' })).toBe('auto');
    expect(merged({ method: 'exact' }, { method: 'hybrid' }, { method: 'sampled' })).toBe('auto');
    expect(merged({ method: 'exact' }, { method: 'sampled' })).toBe('auto');
    // eBPF asked for by another trace: it runs hybrid too (interrupts timed, the rest sampled).
    expect(merged({ method: 'hybrid' }, { method: 'sampled', backend: 'ebpf' })).toBe('hybrid');
    // A trace of IRQ lines asks no irqs-off method.
    expect(merged({ method: 'hybrid' }, { method: 'sampled', all: false, irqs: [3] })).toBe('hybrid');
  });

  it('hybrid goes to the eBPF loader like any method (its loader says what it hooks)', async () => {
    const backend = new EbpfBackend({ loaderPath: '/nonexistent/irqtrace-bpf' });
    const sink = { record: () => {}, failed: () => {} };
    for (const method of ['hybrid', 'sampled'] as const) {
      await expect(backend.start({ ...DEFAULT_KERNEL_CONFIG, method }, sink)).rejects.toThrow(/no eBPF loader at \/nonexistent/);
    }
  });

  it('the API admits hybrid with either backend: no rule on the method field', () => {
    const rules = (JSON.parse(JSON.stringify(IrqTraceSpec)) as { 'x-kubernetes-validations': { rule: string; message: string; fieldPath?: string }[] })['x-kubernetes-validations'];
    expect(rules.filter((r) => r.fieldPath === '.method')).toEqual([]);
  });
});
