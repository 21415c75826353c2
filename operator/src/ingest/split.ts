// One agent batch to what is published: per trace, the trace's events with
// the batch's losses (subject ...events), and the histogram snapshot (subject
// ...hist). Tasks in pods get their namespace and name from the pod UID.
import { irqtrace, toLong } from '@irqtrace/proto';
import { subject } from './subjects.js';

export interface PodRef {
  namespace: string;
  name: string;
}

/** pod UID -> namespace/name (a metadata-only pod informer, or a map in tests). */
export interface PodDirectory {
  lookup(uid: string): PodRef | undefined;
}

export interface Publication {
  subject: string;
  msgID: string;
  data: Uint8Array;
  /** Events in it (for metrics). */
  events: number;
}

function withPod(task: irqtrace.v1.ITask | null | undefined, pods: PodDirectory): irqtrace.v1.ITask | null | undefined {
  if (!task?.podUid || task.podName) return task;
  const pod = pods.lookup(task.podUid);
  return pod ? { ...task, podNamespace: pod.namespace, podName: pod.name } : task;
}

/**
 * The publications of one batch. nodeTraces are the traces the node was
 * told about: an event without traces (an older agent) belongs to all of
 * them, and the histograms go to each.
 */
export function splitBatch(
  node: string,
  bootId: string,
  batch: irqtrace.v1.IEventBatch,
  nodeTraces: readonly string[],
  pods: PodDirectory,
  receivedUnixNs: bigint,
): Publication[] {
  const seq = batch.seq ?? 0;
  const byTrace = new Map<string, irqtrace.v1.IEvent[]>();
  for (const t of nodeTraces) byTrace.set(t, []);
  for (const e of batch.events ?? []) {
    const event = { ...e, task: withPod(e.task, pods), enablingTask: withPod(e.enablingTask, pods) };
    for (const t of e.traces?.length ? e.traces : nodeTraces) {
      let list = byTrace.get(t);
      if (!list) byTrace.set(t, (list = []));
      list.push(event);
    }
  }
  const out: Publication[] = [];
  const base = { node, bootId, seq, receivedUnixNs: toLong(receivedUnixNs) };
  for (const [trace, events] of byTrace) {
    const id = `${node}/${bootId}/${seq.toString()}/${trace}`;
    if (events.length || batch.losses?.length) {
      const data = irqtrace.v1.NodeBatch.encode({ ...base, trace, events, losses: batch.losses ?? [] }).finish();
      out.push({ subject: subject(trace, node, 'events'), msgID: `${id}/events`, data, events: events.length });
    }
    if (batch.histograms) {
      const data = irqtrace.v1.NodeBatch.encode({ ...base, trace, histograms: batch.histograms }).finish();
      out.push({ subject: subject(trace, node, 'hist'), msgID: `${id}/hist`, data, events: 0 });
    }
  }
  return out;
}
