/** Version of proto/irqtrace/v1 that this package speaks (Hello.protocol_version). */
export const PROTOCOL_VERSION = 1;
