// Public API of @irqtrace/operator. The controller, ingest and status roles
// land with their issue; the API group and version are fixed by DESIGN.md §4.
export const API_GROUP = 'irqtrace.io';
export const API_VERSION = 'v1alpha1';
export const KIND = 'IrqTrace';
