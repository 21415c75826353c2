// Kubernetes plumbing the operator's roles share: the IrqTrace informer,
// informers that restart after a broken watch, and status writes by
// server-side apply (each role its own field manager, so they merge).
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_GROUP, API_VERSION, KIND, PLURAL } from './api/crd.js';
import type { IrqTrace } from './api/schema.js';

export type TraceObject = IrqTrace & k8s.KubernetesObject;
export type CachedInformer<T extends k8s.KubernetesObject> = k8s.Informer<T> & k8s.ObjectCache<T>;

export const isStatus = (err: unknown, code: number): boolean => err instanceof k8s.ApiException && err.code === code;

/** An informer over every IrqTrace. */
export function traceInformer(kubeConfig: k8s.KubeConfig): CachedInformer<TraceObject> {
  const custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  return k8s.makeInformer(kubeConfig, `/apis/${API_GROUP}/${API_VERSION}/${PLURAL}`, async () =>
    (await custom.listClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: PLURAL })) as k8s.KubernetesListObject<TraceObject>,
  );
}

/** An informer over every Node. */
export function nodeInformer(kubeConfig: k8s.KubeConfig): CachedInformer<k8s.V1Node> {
  const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
  return k8s.makeInformer(kubeConfig, '/api/v1/nodes', () => core.listNode());
}

/** A broken watch (API server restart, network) is started again after 2 s, until stopped() says so. */
export function restartOnError(informer: k8s.Informer<k8s.KubernetesObject>, log: Logger, stopped: () => boolean): void {
  informer.on('error', (err: unknown) => {
    if (stopped()) return;
    log.warn({ err: String(err) }, 'watch broken; restarting it');
    setTimeout(() => { if (!stopped()) void informer.start(); }, 2000);
  });
}

/** Writes these status fields of a trace as fieldManager (server-side apply on /status, forced). */
export async function applyTraceStatus(custom: k8s.CustomObjectsApi, name: string, fieldManager: string, status: object): Promise<void> {
  await custom.patchClusterCustomObjectStatus(
    {
      group: API_GROUP,
      version: API_VERSION,
      plural: PLURAL,
      name,
      fieldManager,
      force: true,
      body: { apiVersion: `${API_GROUP}/${API_VERSION}`, kind: KIND, metadata: { name }, status },
    },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.ServerSideApply),
  );
}
