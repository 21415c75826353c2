// Compiles kmod/include/uapi/irqtrace.h with the host C compiler and checks
// that the agent's layout table matches the compiler's offsets and sizes.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ABI_VERSION, COUNTERS, Edge, HIST, MAGIC, PREAMBLE, PREAMBLE_SIZE, RECORD, MAX_FRAMES, HIST_BUCKETS, COMM_LEN } from '@irqtrace/agent';
import type { StructLayout } from '@irqtrace/agent';
import { LIMITS } from '@irqtrace/proto';

const uapiDir = resolve(import.meta.dirname, '../../kmod/include/uapi');
const work = mkdtempSync(join(tmpdir(), 'irqtrace-uapi-'));
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

/** The agent's Edge members by the C enumerator's name: Edge.Schedule is IRQTRACE_EDGE_SCHEDULE. */
const EDGES = Object.fromEntries(Object.entries(Edge).filter((e): e is [string, number] => typeof e[1] === 'number').map(([name, value]) => [name.toUpperCase(), value]));

interface Measured {
  size: number;
  fields: Record<string, { offset: number; size: number }>;
  constants: Record<string, number>;
}

function measure(structs: readonly StructLayout[]): Record<string, Measured> {
  const lines: string[] = [
    '#include <stdio.h>',
    '#include <stddef.h>',
    '#include <linux/types.h>',
    '#include "irqtrace.h"',
    '#define FIELD(s, f) printf("\\"%s\\": {\\"offset\\": %zu, \\"size\\": %zu},", #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))',
    'int main(void) {',
    '  printf("{");',
  ];
  for (const s of structs) {
    lines.push(`  printf("\\"${s.cName}\\": {\\"size\\": %zu, \\"fields\\": {", sizeof(struct ${s.cName}));`);
    for (const name of ['hdr', ...Object.keys(s.fields)]) {
      // Flexible array members have no sizeof; measure only their offset.
      if (name === 'frames') {
        lines.push(`  printf("\\"frames\\": {\\"offset\\": %zu, \\"size\\": 0},", offsetof(struct ${s.cName}, frames));`);
      } else {
        lines.push(`  FIELD(${s.cName}, ${name});`);
      }
    }
    lines.push('  printf("\\"_\\": {}}},");');
  }
  lines.push(
    '#define LIMIT(name) printf("\\"%s\\": \\"%llu\\",", #name, (unsigned long long)(IRQTRACE_##name))',
    '  printf("\\"limits\\": {");',
    ...['THRESHOLD_NS_MIN', 'THRESHOLD_NS_MAX', 'THRESHOLD_NS_DEFAULT', 'PERIOD_NS_MIN', 'PERIOD_NS_MAX', 'PERIOD_NS_DEFAULT'].map((n) => `  LIMIT(${n});`),
    '  printf("\\"_\\": \\"\\"},");',
    '#define EDGE(name) printf("\\"%s\\": %d,", #name, (int)(IRQTRACE_EDGE_##name))',
    '  printf("\\"edges\\": {");',
    ...Object.keys(EDGES).map((n) => `  EDGE(${n});`),
    '  printf("\\"_\\": -1},");',
    '  printf("\\"constants\\": {\\"abi\\": %d, \\"record\\": %u, \\"hist\\": %u, \\"counters\\": %u, \\"frames\\": %d, \\"buckets\\": %d, \\"comm\\": %d, \\"max\\": %zu}}\\n",',
    '    IRQTRACE_ABI_VERSION, IRQTRACE_MAGIC_RECORD, IRQTRACE_MAGIC_HIST, IRQTRACE_MAGIC_COUNTERS,',
    '    IRQTRACE_MAX_FRAMES, IRQTRACE_HIST_BUCKETS, IRQTRACE_COMM_LEN, IRQTRACE_RECORD_MAX_SIZE);',
    '  return 0;',
    '}',
  );
  const src = join(work, 'layout.c');
  writeFileSync(src, lines.join('\n'));
  const bin = join(work, 'layout');
  execFileSync('cc', ['-std=c11', '-Wall', '-Werror', '-Wpadded', '-I', uapiDir, src, '-o', bin]);
  return JSON.parse(execFileSync(bin, { encoding: 'utf8' })) as Record<string, Measured>;
}

describe('the uapi header and the agent agree on the binary format', () => {
  const structs = [RECORD, HIST, COUNTERS] as const;
  const measured = measure(structs);

  it.each(structs.map((s) => [s.cName, s] as const))('struct %s has the same size and field offsets', (name, layout) => {
    const m = measured[name];
    expect(m?.size).toBe(layout.size);
    expect((m?.size ?? 1) % 8).toBe(0);
    for (const [field, expected] of Object.entries(layout.fields)) {
      expect({ field, ...m?.fields[field] }).toEqual({ field, ...expected });
    }
    expect(m?.fields.hdr).toEqual({ offset: 0, size: PREAMBLE_SIZE });
    for (const part of Object.values(PREAMBLE)) {
      expect(part.offset + part.size).toBeLessThanOrEqual(PREAMBLE_SIZE);
    }
  });

  it('has the bounds and defaults @irqtrace/proto derives from it (LIMITS), the defaults within the bounds', () => {
    const l = (measured as unknown as { limits: Record<string, string> }).limits;
    for (const [name, limits] of [['THRESHOLD', LIMITS.thresholdNs], ['PERIOD', LIMITS.periodNs]] as const) {
      expect({ name, min: l[`${name}_NS_MIN`], max: l[`${name}_NS_MAX`], default: l[`${name}_NS_DEFAULT`] }).toEqual({ name, min: String(limits.min), max: String(limits.max), default: String(limits.default) });
      expect(limits.default).toBeGreaterThanOrEqual(limits.min);
      expect(limits.default).toBeLessThanOrEqual(limits.max);
    }
  });

  it('numbers the edges (what timed each end) as the agent does', () => {
    const edges = (measured as unknown as { edges: Record<string, number> }).edges;
    expect(edges).toEqual({ ...EDGES, _: -1 });
  });

  it('has the same constants, and magics that spell IRQr/IRQh/IRQc in memory', () => {
    const c = (measured as unknown as { constants: Record<string, number> }).constants;
    expect(c).toEqual({
      abi: ABI_VERSION,
      record: MAGIC.record,
      hist: MAGIC.hist,
      counters: MAGIC.counters,
      frames: MAX_FRAMES,
      buckets: HIST_BUCKETS,
      comm: COMM_LEN,
      max: RECORD.size + 8 * MAX_FRAMES,
    });
    const le = Buffer.alloc(4);
    le.writeUInt32LE(MAGIC.record);
    expect(le.toString('latin1')).toBe('IRQr');
    le.writeUInt32LE(MAGIC.hist);
    expect(le.toString('latin1')).toBe('IRQh');
    le.writeUInt32LE(MAGIC.counters);
    expect(le.toString('latin1')).toBe('IRQc');
  });
});
