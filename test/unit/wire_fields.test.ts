// The wire's field numbers come from the .proto files only: proto/build.mjs
// generates FIELDS and TAGS, and the code that writes or scans the wire by
// hand (the agent's event encoder and batcher, the ingest's scanner and
// splitter) takes every tag from them, so a renamed or removed field fails to
// compile and a renumbered one is followed.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { FIELDS, TAGS } from '@irqtrace/proto';

const root = resolve(import.meta.dirname, '../..');
const protoDir = join(root, 'proto');

/** A value protobufjs encodes (not the default, so the field is written). */
function sample(field: protobuf.Field): unknown {
  const one = (): unknown => {
    if (field.resolvedType instanceof protobuf.Enum) return 1;
    if (field.resolvedType instanceof protobuf.Type) return {};
    switch (field.type) {
      case 'string': return 'x';
      case 'bytes': return new Uint8Array([1]);
      case 'bool': return true;
      default: return 1;
    }
  };
  return field.repeated ? [one()] : one();
}

function reflected(): Map<string, protobuf.Type> {
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => (target.startsWith('irqtrace/') ? join(protoDir, target) : target);
  // Every .proto file, as build.mjs takes them.
  const files = readdirSync(join(protoDir, 'irqtrace/v1')).filter((f) => f.endsWith('.proto'));
  r.loadSync(files.map((f) => join(protoDir, 'irqtrace/v1', f))).resolveAll();
  const types = new Map<string, protobuf.Type>();
  const walk = (ns: protobuf.NamespaceBase, prefix: string): void => {
    for (const n of ns.nestedArray) {
      if (n instanceof protobuf.Type) {
        types.set(prefix + n.name, n);
        walk(n, `${prefix}${n.name}_`);
      } else if (n instanceof protobuf.Namespace) walk(n, prefix);
    }
  };
  walk(r.lookup('irqtrace.v1') as protobuf.Namespace, '');
  return types;
}

describe('generated field numbers and tags', () => {
  const types = reflected();

  it('cover every message and field of the .proto files', () => {
    expect(Object.keys(FIELDS).sort()).toEqual([...types.keys()].sort());
    for (const [name, type] of types) expect(Object.keys(FIELDS[name as keyof typeof FIELDS]).sort(), name).toEqual(type.fieldsArray.map((f) => f.name).sort());
  });

  it('are the tags protobufjs itself writes for each field', () => {
    let checked = 0;
    for (const [name, type] of types) {
      const tags = TAGS[name as keyof typeof TAGS] as Record<string, number>;
      const numbers = FIELDS[name as keyof typeof FIELDS] as Record<string, number>;
      for (const field of type.fieldsArray) {
        const bytes = type.encode(type.fromObject({ [field.name]: sample(field) })).finish();
        const written = protobuf.Reader.create(bytes).uint32();
        expect(tags[field.name], `${name}.${field.name}`).toBe(written);
        expect(numbers[field.name], `${name}.${field.name}`).toBe(field.id);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(80);
  });
});

describe('hand-written wire code', () => {
  const files = ['agent/src/pipeline/encode.ts', 'agent/src/pipeline/batcher.ts', 'agent/src/transport/client.ts', 'operator/src/ingest/split.ts', 'operator/src/ingest/server.ts'];

  it.each(files)('%s takes every tag from the generated table', (file) => {
    const code = readFileSync(join(root, file), 'utf8')
      .split('\n')
      .filter((line) => !/^\s*(\/\/|\*)/.test(line))
      .join('\n');
    // A field number written out: a shifted literal, a tag() of a literal, a literal case of a tag switch.
    expect(code).not.toMatch(/\(\s*\d+\s*<<\s*3\s*\)|\b\d+\s*<<\s*3\b/);
    expect(code).not.toMatch(/\.tag\(\s*\d/);
    expect(code).not.toMatch(/case\s+\d+\s*:/);
    expect(code).not.toMatch(/tag\s*>>>\s*3/);
    // One definition of the service and of the protocol version: @irqtrace/proto's.
    expect(code).not.toMatch(/makeGenericClientConstructor|path:\s*'\/irqtrace\.v1\./);
    expect(code).not.toMatch(/PROTOCOL_VERSION\s*=/);
  });

  it('the agent says the protocol version @irqtrace/proto speaks', () => {
    expect(readFileSync(join(root, 'agent/src/daemon/node_agent.ts'), 'utf8')).toMatch(/protocolVersion: PROTOCOL_VERSION/);
  });
});
