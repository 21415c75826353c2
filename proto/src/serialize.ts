// protobufjs static classes as gRPC (de)serializers.

export function serialize<T>(type: { encode(message: T): { finish(): Uint8Array } }) {
  return (message: T): Buffer => {
    const bytes = type.encode(message).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

export function deserialize<T>(type: { decode(bytes: Uint8Array): T }) {
  return (bytes: Buffer): T => type.decode(bytes);
}
