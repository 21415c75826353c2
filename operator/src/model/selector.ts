// metav1.LabelSelector semantics for IrqTrace.spec.nodeSelector: which nodes
// a trace applies to (the ingest), and the DaemonSet's node affinity (the
// controller), from the same selector.
import type { V1NodeSelectorTerm } from '@kubernetes/client-node';
import type { NodeSelector } from '../api/schema.js';

/** True if the labels satisfy the selector; an empty or absent selector matches every node. */
export function selects(selector: NodeSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const e of selector?.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const listed = value !== undefined && (e.values ?? []).includes(value);
    const ok = e.operator === 'In' ? listed : e.operator === 'NotIn' ? !listed : e.operator === 'Exists' ? has : !has;
    if (!ok) return false;
  }
  return true;
}

/**
 * The selector as one node-affinity term (its requirements ANDed), or
 * undefined when it selects every node. Several traces' terms are ORed.
 */
export function affinityTerm(selector: NodeSelector | undefined): V1NodeSelectorTerm | undefined {
  const labels = Object.entries(selector?.matchLabels ?? {}).map(([key, value]) => ({ key, operator: 'In', values: [value] }));
  const expressions = (selector?.matchExpressions ?? []).map((e) => ({ key: e.key, operator: e.operator, ...(e.values?.length ? { values: [...e.values] } : {}) }));
  const all = [...labels, ...expressions];
  return all.length ? { matchExpressions: all } : undefined;
}
