// pod UID -> namespace/name for the ingest, from a metadata-only informer:
// the API server sends each pod's metadata (PartialObjectMetadata), not its
// spec and status, which on a big cluster is most of the bytes.
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { restartOnError } from '../kube.js';
import type { PodDirectory, PodRef } from './split.js';

/** A pod as the metadata-only API gives it. */
interface PodMetadata extends k8s.KubernetesObject {
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

export class PodMetadataDirectory implements PodDirectory {
  private readonly informer: k8s.Informer<PodMetadata> & k8s.ObjectCache<PodMetadata>;
  private readonly byUid = new Map<string, PodRef>();
  private stopped = false;

  constructor(kubeConfig: k8s.KubeConfig, log: Logger) {
    const metadataConfig = new MetadataOnlyConfig();
    metadataConfig.loadFromOptions({ clusters: kubeConfig.clusters, users: kubeConfig.users, contexts: kubeConfig.contexts, currentContext: kubeConfig.currentContext });
    const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.informer = k8s.makeInformer(metadataConfig, '/api/v1/pods', async () =>
      // The generated client parses the metadata list as a pod list: metadata is all it reads.
      (await core.listPodForAllNamespaces({}, k8s.setHeaderOptions('Accept', METADATA_LIST))) as k8s.KubernetesListObject<PodMetadata>,
    );
    const put = (p: PodMetadata) => {
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
