// Kubernetes Events on IrqTraces (events.k8s.io/v1), for the transitions
// people look for with `kubectl describe irqtrace`. The same reason and note
// on the same object within ten minutes is recorded once. An Event that
// cannot be written is logged: it never fails a reconcile.
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_GROUP, API_VERSION, KIND } from '../api/crd.js';
import type { IrqTrace } from '../api/schema.js';

const DEDUP_MS = 10 * 60_000;
// Events about cluster-scoped objects live in the default namespace.
const EVENT_NAMESPACE = 'default';

export class EventRecorder {
  private readonly api: k8s.EventsV1Api;
  private readonly recent = new Map<string, number>();

  constructor(
    kubeConfig: k8s.KubeConfig,
    private readonly controller: string,
    private readonly log: Logger,
  ) {
    this.api = kubeConfig.makeApiClient(k8s.EventsV1Api);
  }

  record(t: IrqTrace, type: 'Normal' | 'Warning', reason: string, note: string): void {
    const key = `${t.metadata.uid ?? t.metadata.name}/${reason}/${note}`;
    const now = Date.now();
    if ((this.recent.get(key) ?? 0) > now - DEDUP_MS) return;
    this.recent.set(key, now);
    if (this.recent.size > 1000) for (const [k, at] of this.recent) if (at <= now - DEDUP_MS) this.recent.delete(k);
    const body: k8s.EventsV1Event = {
      // Named as client-go names them: object, then the time in hex.
      metadata: { name: `${t.metadata.name}.${(BigInt(now) * 1_000_000n + BigInt(this.recent.size)).toString(16)}`, namespace: EVENT_NAMESPACE },
      eventTime: new k8s.V1MicroTime(now),
      reportingController: `irqtrace.io/${this.controller}`,
      reportingInstance: process.env.POD_NAME ?? `${this.controller}-${process.pid}`,
      action: reason,
      reason,
      note: note.slice(0, 1024),
      type,
      regarding: { apiVersion: `${API_GROUP}/${API_VERSION}`, kind: KIND, name: t.metadata.name, uid: t.metadata.uid },
    };
    this.api.createNamespacedEvent({ namespace: EVENT_NAMESPACE, body }).catch((err: unknown) => {
      this.log.warn({ err: String(err), reason }, 'could not record an Event');
    });
  }
}
