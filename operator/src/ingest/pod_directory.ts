// pod UID -> namespace/name for the ingest, from a metadata-only informer:
// the API server sends each pod's metadata (PartialObjectMetadata), not its
// spec and status, which on a big cluster is most of the bytes.
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { metadataInformer, restartOnError } from '../kube.js';
import type { CachedInformer, ObjectMetadata } from '../kube.js';
import type { PodDirectory, PodRef } from './split.js';

export class PodMetadataDirectory implements PodDirectory {
  private readonly informer: CachedInformer<ObjectMetadata>;
  private readonly byUid = new Map<string, PodRef>();
  private stopped = false;

  constructor(kubeConfig: k8s.KubeConfig, log: Logger) {
    const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.informer = metadataInformer(kubeConfig, '/api/v1/pods', (accept) => core.listPodForAllNamespaces({}, accept));
    const put = (p: ObjectMetadata) => {
      const m = p.metadata;
      if (m?.uid && m.name) this.byUid.set(m.uid, { namespace: m.namespace ?? '', name: m.name });
    };
    this.informer.on('add', put);
    this.informer.on('update', put);
    this.informer.on('delete', (p) => { if (p.metadata?.uid) this.byUid.delete(p.metadata.uid); });
    restartOnError(this.informer, log, () => this.stopped);
  }

  start(): Promise<void> {
    return this.informer.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();
  }

  lookup(uid: string): PodRef | undefined {
    return this.byUid.get(uid);
  }

  get size(): number {
    return this.byUid.size;
  }
}
