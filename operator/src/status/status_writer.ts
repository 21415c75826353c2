// Writes each IrqTrace's status from its aggregate, for the traces marked due since the last
// round (the aggregator runs a round every statusIntervalMs: at most one patch per trace per
// round). A write that fails keeps its trace due for the next round.
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { applyTraceStatus } from '../kube.js';
import type { TraceObject } from '../kube.js';
import type { TraceAggregate } from './aggregate.js';

const FIELD_MANAGER = 'irqtrace-status';

export interface StatusWriterOptions {
  custom: k8s.CustomObjectsApi;
  log: Logger;
  /** The trace as the informer has it, if it exists. */
  trace: (name: string) => TraceObject | undefined;
  /** The trace's aggregate (an empty one if none came yet). */
  aggregate: (name: string) => TraceAggregate;
}

export class StatusWriter {
  private readonly due = new Set<string>();

  constructor(private readonly o: StatusWriterOptions) {}

  markDue(name: string): void {
    this.due.add(name);
  }

  forget(name: string): void {
    this.due.delete(name);
  }

  async writeDue(): Promise<void> {
    const due = [...this.due];
    this.due.clear();
    for (const name of due) {
      const t = this.o.trace(name);
      if (!t || t.metadata.deletionTimestamp) continue;
      try {
        await this.write(t, this.o.aggregate(name));
      } catch (err) {
        this.due.add(name);
        this.o.log.warn({ trace: name, err: String(err) }, 'status not written; retrying');
      }
    }
  }

  private async write(t: TraceObject, a: TraceAggregate): Promise<void> {
    const now = new Date();
    const s = a.status(now.getTime(), t.status?.nodesTargeted ?? 0, t.spec.target.all ? 'all' : 'irq_lines');
    const conditions = s.conditions.map((c) => {
      const previous = t.status?.conditions?.find((p) => p.type === c.type);
      return { ...c, lastTransitionTime: previous?.status === c.status ? previous.lastTransitionTime : now.toISOString(), observedGeneration: t.metadata.generation ?? 0 };
    });
    await applyTraceStatus(this.o.custom, t.metadata.name, FIELD_MANAGER, { ...s, conditions });
  }
}
