// Pod UID -> namespace and name, from the node itself: the kubelet keeps each
// pod's container logs in <pod logs>/<namespace>_<name>_<uid> (/var/log/pods),
// and neither a namespace nor a pod name may contain '_'. So the agent and
// `irqtrace record` name pods with no Kubernetes credentials and no API call;
// the ingest still names, from the API, any pod the agent could not.
// Read again on a miss, at most once a second (a new pod's directory appears
// when the kubelet starts it).
import { readdir } from 'node:fs/promises';

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
  private byUid = new Map<string, PodName>();
  private lastRead = -Infinity;
  /** Reads of the directory so far. */
  reads = 0;

  constructor(
    private readonly dir = '/var/log/pods',
    private readonly minReadIntervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  async nameOf(uid: string): Promise<PodName | undefined> {
    const known = this.byUid.get(uid);
    if (known !== undefined || this.now() - this.lastRead < this.minReadIntervalMs) return known;
    await this.read();
    return this.byUid.get(uid);
  }

  private async read(): Promise<void> {
    this.lastRead = this.now();
    this.reads++;
    let entries: string[];
    try {
      entries = await readdir(this.dir);
    } catch {
      // Not a kubelet node (or not mounted): pods keep their UIDs, the ingest names them.
      return;
    }
    const found = new Map<string, PodName>();
    for (const entry of entries) {
      const pod = parsePodLogDir(entry);
      if (pod) found.set(pod.uid, { namespace: pod.namespace, name: pod.name });
      if (found.size >= MAX_PODS) break;
    }
    this.byUid = found;
  }
}
