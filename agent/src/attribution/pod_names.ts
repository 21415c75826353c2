// Pod UID -> namespace and name, from the node itself: the kubelet keeps each
// pod's container logs in <pod logs>/<namespace>_<name>_<uid> (/var/log/pods),
// and neither a namespace nor a pod name may contain '_'. So the agent and
// `irqtrace record` name pods with no Kubernetes credentials and no API call;
// the ingest still names, from the API, any pod the agent could not.
// Read again on a miss, at most once a second (a new pod's directory appears
// when the kubelet starts it).
import { readdir } from 'node:fs/promises';
import { RereadOnMiss } from './reread_on_miss.js';

export interface PodName {
  namespace: string;
  name: string;
}

/** Bounded: a node runs at most a few hundred pods; a directory with more entries is not a pod log root. */
const MAX_PODS = 65_536;
const ENTRY = /^([a-z0-9][a-z0-9-]*)_([a-z0-9][a-z0-9.-]*)_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/** The pod a kubelet pod-log directory entry names, or undefined. */
export function parsePodLogDir(entry: string): (PodName & { uid: string }) | undefined {
  const m = ENTRY.exec(entry);
  return m ? { namespace: m[1] ?? '', name: m[2] ?? '', uid: m[3] ?? '' } : undefined;
}

export class PodNames {
  private readonly byUid: RereadOnMiss<string, PodName>;

  constructor(
    private readonly dir = '/var/log/pods',
    minReadIntervalMs = 1000,
    now: () => number = Date.now,
  ) {
    this.byUid = new RereadOnMiss(() => this.read(), minReadIntervalMs, now);
  }

  /** Reads of the directory so far. */
  get reads(): number {
    return this.byUid.reads;
  }

  nameOf(uid: string): Promise<PodName | undefined> {
    return this.byUid.get(uid);
  }

  private async read(): Promise<Map<string, PodName> | undefined> {
    let entries: string[];
    try {
      entries = await readdir(this.dir);
    } catch {
      // Not a kubelet node (or not mounted): pods keep their UIDs, the ingest names them.
      return undefined;
    }
    const found = new Map<string, PodName>();
    for (const entry of entries) {
      const pod = parsePodLogDir(entry);
      if (pod) found.set(pod.uid, { namespace: pod.namespace, name: pod.name });
      if (found.size >= MAX_PODS) break;
    }
    return found;
  }
}
