// The IrqTrace CRD on a real kube-apiserver: every manifest of the invalid
// corpus (test/manifests/invalid, each naming the field its error must name)
// is refused by `kubectl apply`; the valid corpus (test/manifests/valid:
// manifests that leave fields out, so that every combination of defaults is
// tried) and the examples are accepted with their defaults filled in, and
// `kubectl get irqtraces` shows the printer columns.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CRD_NAME, irqTraceCrd, irqTraceCrdYaml } from '@irqtrace/operator';
import { LIMITS, durationText } from '@irqtrace/proto';
import { repoRoot } from '../../test/lib/paths.js';
import { waitUntil } from '../../test/lib/wait.js';
import { startCluster } from '../../test/cluster/cluster.js';
import type { Cluster } from '../../test/cluster/cluster.js';

const invalidDir = join(repoRoot, 'test', 'manifests', 'invalid');
const validDir = join(repoRoot, 'test', 'manifests', 'valid');
const valid = readdirSync(validDir).filter((f) => f.endsWith('.yaml')).sort();
const examplesDir = join(repoRoot, 'examples');
const corpus = readdirSync(invalidDir).filter((f) => f.endsWith('.yaml')).sort();
const examples = readdirSync(examplesDir).filter((f) => f.endsWith('.yaml')).sort();

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ controllerManager: false });
  const config = new k8s.KubeConfig();
  config.loadFromString(cluster.kubeconfig);
  const ext = config.makeApiClient(k8s.ApiextensionsV1Api);
  const created = await cluster.kubectl(['create', '-f', '-'], irqTraceCrdYaml());
  expect(created.stderr).toBe('');
  await waitUntil('the IrqTrace CRD established', 30_000, async () => {
    const got = await ext.readCustomResourceDefinition({ name: CRD_NAME });
    return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
  });
  await waitUntil('irqtraces served', 30_000, async () => (await cluster.kubectl(['get', 'irqtraces'])).code === 0);
});

afterAll(async () => {
  await cluster.stop();
});

describe('the IrqTrace CRD', () => {
  it('is stored as built: every rule, enum and default (nothing dropped on the way)', async () => {
    const got = await cluster.kubectl(['get', 'crd', CRD_NAME, '-o', 'json']);
    const stored = JSON.parse(got.stdout) as { spec: { versions: { schema: unknown }[] } };
    const built = irqTraceCrd() as { spec: { versions: { schema: unknown }[] } };
    expect(stored.spec.versions[0]?.schema).toEqual(built.spec.versions[0]?.schema);
  });

  it(`refuses each of the ${corpus.length} invalid manifests, naming the bad field`, async () => {
    expect(corpus.length).toBeGreaterThanOrEqual(25);
    const wrong: string[] = [];
    const said = new Map<string, string>();
    for (const file of corpus) {
      const text = readFileSync(join(invalidDir, file), 'utf8');
      const field = /^# expect: (\S+)/m.exec(text)?.[1];
      if (!field) throw new Error(`${file}: no '# expect: <field>' line`);
      const r = await cluster.kubectl(['apply', '-f', join(invalidDir, file)]);
      said.set(file, r.stderr);
      if (r.code === 0) wrong.push(`${file}: accepted`);
      else if (!r.stderr.includes(field)) wrong.push(`${file}: refused without naming ${field}: ${r.stderr.trim()}`);
    }
    expect(wrong).toEqual([]);
    // Range errors show the value refused, and cross-field rules say what to do.
    expect(said.get('03-threshold-too-short.yaml')).toContain('spec.threshold: Invalid value: "string": must be from 1us to 60s, not 500ns');
    expect(said.get('10-softirqs-with-ebpf.yaml')).toContain('softirqs needs the kernel module');
    expect((await cluster.kubectl(['get', 'irqtraces', '-o', 'name'])).stdout).toBe('');
  });

  it(`accepts each of the ${valid.length} manifests that leave fields out, with the kernel side's defaults`, async () => {
    expect(valid.length).toBeGreaterThanOrEqual(8);
    const refused: string[] = [];
    for (const file of valid) {
      const r = await cluster.kubectl(['apply', '-f', join(validDir, file)]);
      if (r.code !== 0) refused.push(`${file}: ${r.stderr.trim()}`);
    }
    expect(refused).toEqual([]);
    const got = await cluster.kubectl(['get', 'irqtrace', 'valid-01', '-o', 'json']);
    const spec = (JSON.parse(got.stdout) as { spec: Record<string, unknown> }).spec;
    expect(spec).toMatchObject({ method: 'sampled', threshold: durationText(LIMITS.thresholdNs.default), samplePeriod: durationText(LIMITS.periodNs.default) });
    for (const file of valid) await cluster.kubectl(['delete', '-f', join(validDir, file)]);
  });

  it('accepts the examples, fills in the defaults, and lists them with their columns', async () => {
    for (const file of examples) {
      const r = await cluster.kubectl(['apply', '-f', join(examplesDir, file)]);
      expect(r.stderr, file).toBe('');
    }
    const got = await cluster.kubectl(['get', 'irqtrace', 'all-cpus', '-o', 'json']);
    const spec = (JSON.parse(got.stdout) as { spec: Record<string, unknown> }).spec;
    expect(spec).toMatchObject({ method: 'auto', backend: 'auto', samplePeriod: '1ms', softirqs: false, stacks: true, threshold: '500us' });
    const lines = await cluster.kubectl(['get', 'irqtrace', 'serial-line', '-o', 'json']);
    expect((JSON.parse(lines.stdout) as { spec: Record<string, unknown> }).spec).toMatchObject({ threshold: '1ms', samplePeriod: '1ms' });
    const table = await cluster.kubectl(['get', 'irqt']);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+TARGET\s+THRESHOLD\s+NODES\s+VIOLATIONS\s+WORST\s+READY\s+AGE$/);
    expect(table.stdout).toMatch(/\nnic-lines\s+100us\s+\d+s\n/);
  });
});
