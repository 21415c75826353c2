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

/** An object as the metadata-only API gives it (PartialObjectMetadata): no spec, no status. */
export interface ObjectMetadata extends k8s.KubernetesObject {
  metadata?: k8s.V1ObjectMeta;
}

const METADATA_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';
const METADATA = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';

/** A KubeConfig whose requests (the informer's watch among them) ask for metadata only. */
class MetadataOnlyConfig extends k8s.KubeConfig {
  override async applyToFetchOptions(opts: Parameters<k8s.KubeConfig['applyToFetchOptions']>[0]): ReturnType<k8s.KubeConfig['applyToFetchOptions']> {
    // client-node passes headers as an object (raw header lists are an http.request option it does not use).
    const headers = opts.headers instanceof Array ? {} : opts.headers;
    return super.applyToFetchOptions({ ...opts, headers: { ...headers, Accept: METADATA } });
  }
}

/**
 * A metadata-only informer at path: the API server sends each object's metadata, not its spec
 * and status, which for pods and nodes of a big cluster is most of the bytes. list is the
 * generated client's list call, given the header that asks for metadata.
 */
export function metadataInformer(kubeConfig: k8s.KubeConfig, path: string, list: (accept: ReturnType<typeof k8s.setHeaderOptions>) => Promise<unknown>): CachedInformer<ObjectMetadata> {
  const metadataConfig = new MetadataOnlyConfig();
  metadataConfig.loadFromOptions({ clusters: kubeConfig.clusters, users: kubeConfig.users, contexts: kubeConfig.contexts, currentContext: kubeConfig.currentContext });
  // The generated client parses the metadata list as a list of full objects: metadata is all it reads.
  return k8s.makeInformer(metadataConfig, path, async () => (await list(k8s.setHeaderOptions('Accept', METADATA_LIST))) as k8s.KubernetesListObject<ObjectMetadata>);
}

/** A metadata-only informer over every Node (names and labels are all the operator reads). */
export function nodeInformer(kubeConfig: k8s.KubeConfig): CachedInformer<ObjectMetadata> {
  const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
  return metadataInformer(kubeConfig, '/api/v1/nodes', (accept) => core.listNode({}, accept));
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
