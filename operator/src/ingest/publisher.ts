// The ingest's side of JetStream: makes sure the IRQTRACE stream exists with
// the configured limits, and publishes with a message id (JetStream stores a
// re-sent batch once within its duplicate window). A publish resolves only
// with the server's PubAck: the ingest acks the agent after that, never before.
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { STREAM, SUBJECT_ROOT } from './subjects.js';

export interface StreamLimits {
  /** How long messages are kept (default 7 days). */
  maxAgeMs?: number;
  /** How many bytes the stream keeps at most (default 1 GiB); the oldest go first. */
  maxBytes?: number;
  /** JetStream's dedup window for Nats-Msg-Id (default 10 min). */
  duplicateWindowMs?: number;
  replicas?: number;
}

const MS = 1_000_000;

/** NATS credentials (user and password), when the server asks for them. */
export interface NatsAuth {
  user?: string;
  pass?: string;
}

/** The credentials in $NATS_USER and $NATS_PASSWORD (the chart sets them from a Secret). */
export function natsAuthFromEnv(env: NodeJS.ProcessEnv = process.env): NatsAuth {
  return env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? '' } : {};
}

export class StreamPublisher {
  private constructor(
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
  ) {}

  static async connect(servers: string | string[], limits: StreamLimits, log: Logger, name = 'irqtrace-ingest', auth: NatsAuth = {}): Promise<StreamPublisher> {
    // Reconnects forever: the agents keep what is unacked meanwhile.
    const nc = await connect({ servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 1000, ...auth });
    const jsm = await jetstreamManager(nc);
    const config = {
      subjects: [`${SUBJECT_ROOT}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: (limits.maxAgeMs ?? 7 * 24 * 3600_000) * MS,
      max_bytes: limits.maxBytes ?? 1024 ** 3,
      duplicate_window: (limits.duplicateWindowMs ?? 600_000) * MS,
      num_replicas: limits.replicas ?? 1,
    };
    try {
      await jsm.streams.info(STREAM);
      await jsm.streams.update(STREAM, config);
    } catch (err) {
      if (!String(err).includes('not found')) throw err;
      await jsm.streams.add({ name: STREAM, ...config });
      log.info({ stream: STREAM, ...config }, 'created the event stream');
    }
    return new StreamPublisher(nc, jetstream(nc));
  }

  publish(subject: string, data: Uint8Array, msgID?: string): Promise<PubAck> {
    return this.js.publish(subject, data, msgID ? { msgID } : undefined);
  }

  async close(): Promise<void> {
    await this.nc.drain();
  }
}
