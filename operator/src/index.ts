// Public API of @irqtrace/operator: the IrqTrace API (types, schema, CRD).
// The controller, ingest and status roles land with their issue.
export { API_GROUP, API_VERSION, CRD_NAME, KIND, PLURAL, irqTraceCrd, irqTraceCrdYaml, openApi } from './api/crd.js';
export { IrqTraceSpec, IrqTraceStatus, MAX_STATUS_NODES, MAX_WORST } from './api/schema.js';
export type { IrqTrace, NodeSelector, NodeStatus, Violation } from './api/schema.js';
