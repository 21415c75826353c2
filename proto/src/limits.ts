// The kernel side's bounds and defaults, and how to write them, without the
// rest of the package (protobufjs, gRPC): `@irqtrace/proto/limits` is what a
// command line can load at start.
export { LIMITS } from './gen/limits.js';
export { durationText } from './duration.js';
