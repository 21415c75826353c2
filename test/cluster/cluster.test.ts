// Smoke test of the Kubernetes rig: a real etcd + kube-apiserver +
// kube-controller-manager, driven with @kubernetes/client-node 1.4, kubectl and helm.
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../lib/process.js';
import { waitUntil } from '../lib/wait.js';
import { binary } from './binaries.js';
import { startCluster } from './cluster.js';
import type { Cluster } from './cluster.js';

const group = 'smoke.irqtrace.io';
const plural = 'widgets';

const crd: k8s.V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${plural}.${group}` },
  spec: {
    group,
    scope: 'Cluster',
    names: { plural, singular: 'widget', kind: 'Widget', shortNames: ['wg'] },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: [
          { name: 'Size', type: 'integer', jsonPath: '.spec.size' },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
        ],
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', properties: { size: { type: 'integer', minimum: 1 } } },
              status: { type: 'object', properties: { seen: { type: 'integer' } } },
            },
          },
        },
      },
    ],
  },
};

interface Widget {
  apiVersion: string;
  kind: string;
  metadata: k8s.V1ObjectMeta;
  spec?: { size?: number };
  status?: { seen?: number };
}

let cluster: Cluster;
let config: k8s.KubeConfig;

beforeAll(async () => {
  cluster = await startCluster();
  config = new k8s.KubeConfig();
  config.loadFromString(cluster.kubeconfig);
});

afterAll(async () => {
  await cluster.stop();
});

describe('the Kubernetes control-plane rig', () => {
  it('serves a CRD, its objects, watches and the status subresource to client-node', async () => {
    const ext = config.makeApiClient(k8s.ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({ body: crd });
    await waitUntil('CRD established', 30_000, async () => {
      const got = await ext.readCustomResourceDefinition({ name: `${plural}.${group}` });
      return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
    });

    const objects = config.makeApiClient(k8s.CustomObjectsApi);
    // Established comes a moment before the new resource path is served.
    await waitUntil('CRD served', 30_000, () =>
      objects.listClusterCustomObject({ group, version: 'v1', plural }).then(() => true, () => false));

    const events: { type: string; object: Widget }[] = [];
    let watchError: unknown;
    const watch = new k8s.Watch(config);
    const request = await watch.watch(`/apis/${group}/v1/${plural}`, {}, (type, object: Widget) => {
      events.push({ type, object });
    }, (err: unknown) => {
      watchError = err;
    });

    await objects.createClusterCustomObject({
      group, version: 'v1', plural,
      body: { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 3 } },
    });
    await objects.patchClusterCustomObjectStatus(
      { group, version: 'v1', plural, name: 'w1', body: { status: { seen: 42 } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );

    await waitUntil('watch events', 15_000, () => {
      if (watchError) throw new Error('watch ended early', { cause: watchError });
      return Promise.resolve(events.some((e) => e.type === 'MODIFIED'));
    });
    request.abort();
    expect(events[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'w1' }, spec: { size: 3 } } });
    expect(events.find((e) => e.type === 'MODIFIED')?.object.status).toEqual({ seen: 42 });

    // A status patch must not be able to change the spec, and the schema is enforced.
    const invalid = objects.createClusterCustomObject({
      group, version: 'v1', plural,
      body: { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: 'w2' }, spec: { size: 0 } },
    });
    await expect(invalid).rejects.toThrow(/spec\.size/);
  });

  it('answers kubectl, with printer columns and short names', async () => {
    const got = await cluster.kubectl(['get', 'wg']);
    expect(got.stderr).toBe('');
    expect(got.stdout).toMatch(/^NAME\s+SIZE\s+AGE\n/);
    expect(got.stdout).toMatch(/\nw1\s+3\s+\d+s\n/);
    const version = await cluster.kubectl(['version', '-o', 'json']);
    const parsed = JSON.parse(version.stdout) as { serverVersion: { gitVersion: string } };
    expect(parsed.serverVersion.gitVersion).toMatch(/^v1\.\d+\.\d+$/);
  });

  it('enforces RBAC: a user without grants is refused', async () => {
    const kubectl = await binary('kube', 'kubectl');
    const denied = await run(kubectl, ['--kubeconfig', cluster.nobodyKubeconfigPath, 'get', 'namespaces']);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/forbidden: User "nobody" cannot list resource "namespaces"/);
  });

  it('runs the controller manager: a new namespace gets its default service account', async () => {
    await cluster.kubectl(['create', 'namespace', 'smoke']);
    await waitUntil('default service account', 30_000, async () => {
      const sa = await cluster.kubectl(['-n', 'smoke', 'get', 'serviceaccount', 'default', '-o', 'name']);
      return sa.stdout.trim() === 'serviceaccount/default';
    });
  });

  it('answers helm', async () => {
    const version = await cluster.helm(['version', '--short']);
    expect(version.stdout).toMatch(/^v3\.\d+\.\d+/);
    const list = await cluster.helm(['list', '--all-namespaces', '-o', 'json']);
    expect(list.stderr).toBe('');
    expect(JSON.parse(list.stdout)).toEqual([]);
  });
});

describe('stopping the cluster', () => {
  it('leaves no process and no port behind', async () => {
    const other = await startCluster({ controllerManager: false });
    const port = new URL(other.server).port;
    await other.stop();
    const apiserver = await binary('kube', 'kube-apiserver');
    expect((await run('pgrep', ['-f', `${apiserver}.*--secure-port ${port}`])).stdout).toBe('');
    const refused = await fetch(`${other.server}/readyz`).then(() => 'answered', (e: unknown) => String(e));
    expect(refused).toMatch(/fetch failed/);
  });
});
