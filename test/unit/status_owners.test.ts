// Every IrqTrace status field has one owner. The controller and the status
// aggregator write the status by server-side apply with force, each as its own
// field manager: a field both wrote would flip between them, each computed
// from the other's numbers. Their status objects share only the conditions
// list (a list-map keyed by type), and no condition type.
import { describe, expect, it } from 'vitest';
import type { IrqTrace } from '@irqtrace/operator';
import { controllerStatus } from '../../operator/src/controller/trace_status.js';
import { TraceAggregate } from '../../operator/src/status/aggregate.js';

const trace: IrqTrace = {
  apiVersion: 'irqtrace.io/v1alpha1',
  kind: 'IrqTrace',
  metadata: { name: 't', generation: 3 },
  spec: { target: { all: true } },
  status: { nodesTargeted: 2, nodesReporting: 1, nodesSummary: '1/2' },
};

describe('status field ownership', () => {
  it('the controller and the aggregator write disjoint fields and conditions', () => {
    const controller = controllerStatus(trace, [{ name: 'n1', labels: {} }, { name: 'n2', labels: {} }]);
    const aggregator = new TraceAggregate('t').status(Date.now(), 2);
    const shared = Object.keys(controller).filter((k) => k in aggregator);
    expect(shared).toEqual(['conditions']);
    const types = (s: { conditions: { type: string }[] }) => s.conditions.map((c) => c.type);
    expect(types(controller).filter((t) => types(aggregator).includes(t))).toEqual([]);
  });

  it('a deleted trace waiting to unload keeps every field the controller owns (an apply without one drops it)', () => {
    const nodes = [{ name: 'n1', labels: {} }, { name: 'n2', labels: {} }];
    const deleted: IrqTrace = { ...trace, metadata: { ...trace.metadata, deletionTimestamp: '2026-12-06T12:00:00Z' } };
    const unloading = controllerStatus(deleted, nodes, new Date(), { unloading: { reason: 'Unloading', message: 'waiting for 1 node to apply a config without the trace: n1' } });
    expect(Object.keys(unloading).sort()).toEqual(Object.keys(controllerStatus(trace, nodes)).sort());
    expect(unloading).toMatchObject({ observedGeneration: 3, targetSummary: 'all', nodesTargeted: 2 });
    expect(unloading.conditions).toEqual([expect.objectContaining({ type: 'Ready', status: 'False', reason: 'Unloading', observedGeneration: 3 })]);
  });

  it('nodesSummary is the aggregator\'s, from its reporting count and the controller\'s nodesTargeted', () => {
    expect(new TraceAggregate('t').status(Date.now(), 2)).toMatchObject({ nodesReporting: 0, nodesSummary: '0/2' });
    expect(controllerStatus(trace, [])).not.toHaveProperty('nodesSummary');
  });
});
