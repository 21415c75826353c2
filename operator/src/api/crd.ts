// The IrqTrace CustomResourceDefinition, built from the schemas in
// api/schema.ts (the one source of truth). `irqtrace-operator crd` prints it;
// the Helm chart and the tests apply it as YAML. (Not as client-node's
// V1CustomResourceDefinition: its serializer knows enum, default and
// x-kubernetes-* only under other names, and silently drops them.)
import { stringify } from 'yaml';
import { IrqTraceSpec, IrqTraceStatus } from './schema.js';
import type { TSchema } from '@sinclair/typebox';

export const API_GROUP = 'irqtrace.io';
export const API_VERSION = 'v1alpha1';
export const KIND = 'IrqTrace';
export const PLURAL = 'irqtraces';
export const CRD_NAME = `${PLURAL}.${API_GROUP}`;

// Keywords of JSON Schema that a structural CRD schema may not carry.
const FORBIDDEN = new Set(['const', 'anyOf', 'oneOf', 'allOf', 'not', 'patternProperties', '$id', '$ref', '$schema', 'definitions']);

/** A JSON (OpenAPI v3) schema, or the CRD, as plain JSON. */
export type Json = Record<string, unknown>;

/** The schema as plain OpenAPI (TypeBox's symbol keys dropped), checked for what Kubernetes refuses. */
export function openApi(schema: TSchema): Json {
  const plain = JSON.parse(JSON.stringify(schema)) as Json;
  const check = (node: unknown, path: string): void => {
    if (Array.isArray(node)) {
      node.forEach((n, i) => { check(n, `${path}[${i}]`); });
      return;
    }
    if (node === null || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node)) {
      if (FORBIDDEN.has(key)) throw new Error(`CRD schema at ${path}: '${key}' is not allowed in a structural schema`);
      // Property names are data here, not keywords.
      if (key === 'properties') for (const [name, sub] of Object.entries(value as object)) check(sub, `${path}.${name}`);
      else check(value, `${path}.${key}`);
    }
  };
  check(plain, '');
  return plain;
}

export function irqTraceCrd(): Json {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: CRD_NAME,
      labels: { 'app.kubernetes.io/name': 'irqtrace', 'app.kubernetes.io/part-of': 'irqtrace' },
      // Helm leaves it on uninstall: deleting the CRD would delete every IrqTrace.
      annotations: { 'helm.sh/resource-policy': 'keep' },
    },
    spec: {
      group: API_GROUP,
      // Cluster-scoped: a trace loads code into node kernels, which only cluster admins may ask for.
      scope: 'Cluster',
      names: { plural: PLURAL, singular: 'irqtrace', kind: KIND, listKind: `${KIND}List`, shortNames: ['irqt'], categories: ['irqtrace'] },
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Target', type: 'string', jsonPath: '.status.targetSummary', description: 'What is watched' },
            { name: 'Threshold', type: 'string', jsonPath: '.spec.threshold' },
            { name: 'Nodes', type: 'string', jsonPath: '.status.nodesSummary', description: 'Nodes reporting / targeted' },
            { name: 'Violations', type: 'integer', jsonPath: '.status.violations' },
            { name: 'Worst', type: 'string', jsonPath: '.status.worst', description: 'The longest section, and who' },
            { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'IrqTrace: measure how long nodes keep interrupts (or an IRQ line) disabled, and who did it.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: openApi(IrqTraceSpec),
                status: openApi(IrqTraceStatus),
              },
            },
          },
        },
      ],
    },
  };
}

export function irqTraceCrdYaml(): string {
  return stringify(irqTraceCrd(), { lineWidth: 0 });
}
