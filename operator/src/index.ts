// Public API of @irqtrace/operator: the IrqTrace API (types, schema, CRD).
// The roles (controller, ingest, status) run from the `irqtrace-operator` program (main.ts).
export { API_GROUP, API_VERSION, CRD_NAME, KIND, PLURAL, irqTraceCrd, irqTraceCrdYaml, openApi } from './api/crd.js';
export { IrqTraceSpec, IrqTraceStatus, MAX_STATUS_NODES, MAX_WORST } from './api/schema.js';
export type { IrqTrace, NodeSelector, NodeStatus, Violation } from './api/schema.js';
