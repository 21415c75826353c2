// The generated service definition works over a real grpc-js connection on
// loopback: hello -> config, batch -> ack, in both directions of one stream.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { irqtrace, ingestServiceDefinition, IngestServiceClient, toBigInt, toLong } from '@irqtrace/proto';
import type { ConnectCall } from '@irqtrace/proto';

const v1 = irqtrace.v1;
let server: grpc.Server;
let address = '';

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(ingestServiceDefinition, {
    connect(call: ConnectCall) {
      call.on('data', (message: irqtrace.v1.AgentMessage) => {
        if (message.hello) {
          call.write(v1.IngestMessage.create({ config: { version: toLong(1n), traces: [{ name: `for-${message.hello.node}` }] } }));
        } else if (message.batch) {
          call.write(v1.IngestMessage.create({ ack: { upToSeq: message.batch.seq } }));
        }
      });
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) reject(err);
      else resolve(p);
    });
  });
  address = `127.0.0.1:${port}`;
});

afterAll(() => {
  server.forceShutdown();
});

describe('IngestService.Connect over grpc-js', () => {
  it('answers a hello with the node config and a batch with its ack', async () => {
    const client = new IngestServiceClient(address, grpc.credentials.createInsecure());
    const stream = client.connect();
    const replies: irqtrace.v1.IngestMessage[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (m: irqtrace.v1.IngestMessage) => {
        replies.push(m);
        if (replies.length === 2) stream.end();
      });
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    stream.write(v1.AgentMessage.create({ hello: { node: 'node-a', bootId: 'b1', protocolVersion: 1 } }));
    stream.write(v1.AgentMessage.create({ batch: { seq: toLong(2n ** 60n), events: [{ durationNs: toLong(5n) }] } }));
    await done;
    client.close();
    expect(replies[0]?.config?.traces?.[0]?.name).toBe('for-node-a');
    expect(toBigInt(replies[1]?.ack?.upToSeq)).toBe(2n ** 60n);
  });
});
