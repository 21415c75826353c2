// charts/irqtrace with the real helm and kube-apiserver: lint and template
// clean (defaults and every option on), what it renders agrees with the
// operator's own sources (CRD, RBAC rules, config), bad values are refused
// with the value named, and install / upgrade / uninstall do what they
// should (no kubelet: the objects are checked, not running pods).
import { X509Certificate } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CRD_NAME, irqTraceCrd } from '@irqtrace/operator';
import { parseOperatorConfig } from '../../operator/src/config.js';
import { CLUSTER_RULES, EVENT_RULES, NAMESPACE_RULES, ownNamespaceRules } from '../../operator/src/deploy/rbac.js';
import { repoRoot } from '../../test/lib/paths.js';
import { waitUntil } from '../../test/lib/wait.js';
import { startCluster } from '../../test/cluster/cluster.js';
import type { Cluster } from '../../test/cluster/cluster.js';

const CHART = join(repoRoot, 'charts', 'irqtrace');
const MAXIMAL = join(repoRoot, 'charts', 'test', 'values-maximal.yaml');
const BAD = join(repoRoot, 'charts', 'test', 'bad-values');
const NS = 'irqtrace-system';
const KUBE = ['--kube-version', '1.34.0'];

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  rules?: unknown[];
  data?: Record<string, string>;
  spec?: unknown;
}

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ controllerManager: false });
});

afterAll(async () => {
  await cluster.stop();
});

async function helm(args: string[]): Promise<string> {
  const r = await cluster.helm(args);
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function render(extra: string[] = []): Promise<Obj[]> {
  const out = await helm(['template', 'irqtrace', CHART, '-n', NS, ...KUBE, ...extra]);
  return parseAllDocuments(out).map((d) => d.toJSON() as Obj | null).filter((o): o is Obj => o !== null);
}

const find = (objs: Obj[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);

describe('the Helm chart', () => {
  it('lints clean with the defaults and with every option on', async () => {
    for (const values of [[], ['-f', MAXIMAL]]) {
      const r = await cluster.helm(['lint', '--strict', CHART, ...KUBE, ...values]);
      expect(r.stdout + r.stderr).toContain('1 chart(s) linted, 0 chart(s) failed');
    }
    const maximal = await render(['-f', MAXIMAL]);
    expect(maximal.map((o) => o.kind)).toEqual(expect.arrayContaining(['ServiceMonitor', 'PodMonitor', 'PrometheusRule', 'Certificate', 'StatefulSet']));
  });

  it('renders what the operator is built from: its CRD, its RBAC rules, a config it accepts', async () => {
    const objs = await render();
    const crd = find(objs, 'CustomResourceDefinition', CRD_NAME);
    expect(crd).toEqual(irqTraceCrd());
    expect(crd?.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    expect(find(objs, 'ClusterRole', 'irqtrace-operator')?.rules).toEqual(CLUSTER_RULES);
    expect(find(objs, 'Role', 'irqtrace-operator')?.rules).toEqual(NAMESPACE_RULES);
    expect(find(objs, 'Role', 'irqtrace-operator-events')?.rules).toEqual(EVENT_RULES);
    expect(find(objs, 'ClusterRole', 'irqtrace-operator-namespace')?.rules).toEqual(ownNamespaceRules(NS));
    // No other grants anywhere in the chart; the agents' account is bound to nothing.
    expect(objs.filter((o) => /Role$/.test(o.kind)).map((o) => o.metadata.name).sort()).toEqual(['irqtrace-operator', 'irqtrace-operator', 'irqtrace-operator-events', 'irqtrace-operator-namespace']);
    expect(JSON.stringify(objs.filter((o) => /RoleBinding$/.test(o.kind)))).not.toContain('irqtrace-agent');
    // The ingest Service by default; a node address where agents cannot reach Services (maximal):
    // either way TLS checks the Service's name.
    for (const [values, address] of [[[], /^irqtrace-ingest\.irqtrace-system\.svc:\d+$/], [['-f', MAXIMAL], /^127\.0\.0\.1:7443$/]] as const) {
      const config = find(await render([...values]), 'ConfigMap', 'irqtrace-operator')?.data?.['operator.yaml'] ?? '';
      const parsed = parseOperatorConfig(config);
      expect(parsed.agents.ingestAddress).toMatch(address);
      expect(parsed.agents.tlsServerName).toBe('irqtrace-ingest.irqtrace-system.svc');
      expect(parsed.agents.podSecurityLabel).toBe(true);
      expect(parsed.ingest.tls?.requireClientCert).toBe(true);
    }
  });

  it('rolls a host-network operator one pod at a time (a surge pod would want the same node ports)', async () => {
    const strategy = async (values: string[]) => (find(await render(values), 'Deployment', 'irqtrace-operator')?.spec as { strategy?: unknown } | undefined)?.strategy;
    expect(await strategy([])).toBeUndefined();
    expect(await strategy(['--set', 'operator.hostNetwork=true'])).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } });
  });

  it(`refuses each of the bad values files, naming the value`, async () => {
    const files = readdirSync(BAD).filter((f) => f.endsWith('.yaml')).sort();
    expect(files.length).toBeGreaterThanOrEqual(15);
    const wrong: string[] = [];
    for (const f of files) {
      const expected = /^# expect: (.+)$/m.exec(readFileSync(join(BAD, f), 'utf8'))?.[1] ?? '';
      const r = await cluster.helm(['template', 'irqtrace', CHART, ...KUBE, '-f', join(BAD, f)]);
      if (r.code === 0) wrong.push(`${f}: accepted`);
      else if (!r.stderr.includes(expected)) wrong.push(`${f}: ${r.stderr.trim()}`);
    }
    expect(wrong).toEqual([]);
  });

  it('installs, upgrades keeping its certificates and NATS password, and uninstalls keeping the CRD', async () => {
    await helm(['install', 'irqtrace', CHART, '-n', NS, '--create-namespace']);
    const get = async (kind: string, name: string, ns = NS) => JSON.parse((await cluster.kubectl(['get', kind, name, '-n', ns, '-o', 'json'])).stdout) as Obj & { data?: Record<string, string>; spec?: { replicas?: number } };
    for (const [kind, name] of [['deployment', 'irqtrace-operator'], ['service', 'irqtrace-ingest'], ['statefulset', 'irqtrace-nats'], ['configmap', 'irqtrace-operator'], ['serviceaccount', 'irqtrace-agent'], ['secret', 'irqtrace-nats-auth']]) {
      expect((await cluster.kubectl(['get', kind ?? '', name ?? '', '-n', NS])).code, `${kind}/${name}`).toBe(0);
    }
    await waitUntil('the CRD established', 30_000, async () => (await cluster.kubectl(['get', 'irqtraces'])).code === 0);
    // The generated certificates: the ingest's names its Service, both chain to one CA.
    const ingestTls = await get('secret', 'irqtrace-ingest-tls');
    const agentTls = await get('secret', 'irqtrace-agent-tls');
    const pem = (s: typeof ingestTls, key: string) => Buffer.from(s.data?.[key] ?? '', 'base64');
    const server = new X509Certificate(pem(ingestTls, 'tls.crt'));
    const ca = new X509Certificate(pem(ingestTls, 'ca.crt'));
    expect(server.subjectAltName).toContain('DNS:irqtrace-ingest.irqtrace-system.svc');
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(new X509Certificate(pem(agentTls, 'tls.crt')).verify(ca.publicKey)).toBe(true);
    const password = (await get('secret', 'irqtrace-nats-auth')).data?.password;

    await helm(['upgrade', 'irqtrace', CHART, '-n', NS, '--set', 'operator.replicas=3']);
    expect((await get('deployment', 'irqtrace-operator')).spec?.replicas).toBe(3);
    expect((await get('secret', 'irqtrace-ingest-tls')).data?.['tls.crt']).toBe(ingestTls.data?.['tls.crt']);
    expect((await get('secret', 'irqtrace-nats-auth')).data?.password).toBe(password);

    await cluster.kubectl(['apply', '-f', join(repoRoot, 'examples', 'all-cpus.yaml')]);
    await helm(['uninstall', 'irqtrace', '-n', NS]);
    expect((await cluster.kubectl(['get', 'deployment', 'irqtrace-operator', '-n', NS])).code).not.toBe(0);
    expect((await cluster.kubectl(['get', 'clusterrole', 'irqtrace-operator'])).code).not.toBe(0);
    // Kept: the CRD, and with it the users' IrqTraces.
    expect((await cluster.kubectl(['get', 'crd', CRD_NAME])).code).toBe(0);
    expect((await cluster.kubectl(['get', 'irqtrace', 'all-cpus'])).code).toBe(0);
  });
});
