// The status aggregator's durable JetStream consumer over the event stream, made again at the
// checkpoint's cursor whenever it starts, breaks or may have lost a delivery. Messages come in
// stream order; records applied beyond the cursor skip what they hold (appliedThrough), so
// starting over there loses nothing and counts nothing twice. Resuming the old consumer would
// not do: messages delivered to a killed aggregator come again only after ack_wait, behind newer
// ones, and a record's high-water mark would then skip them as already applied.
import type { NatsConnection } from '@nats-io/nats-core';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { STREAM } from '../ingest/subjects.js';

export const CONSUMER = 'irqtrace-status';

export interface EventConsumerOptions {
  log: Logger;
  /** The stream sequence the checkpoint holds everything up to: consuming (re)starts after it. */
  cursor: () => number;
  /** Each message, in stream order. */
  onMessage: (m: JsMsg) => void;
}

export class EventConsumer {
  private messages: ConsumerMessages | undefined;
  private consuming: Promise<void> | undefined;
  /** The pending re-subscription, if any. */
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastSeq = 0;
  /** Times deliveries were lost on the way and the consumer started over at the checkpoint. */
  deliveryGaps = 0;
  /** Reconnects to NATS, each followed by consuming again from the checkpoint. */
  reconnects = 0;

  constructor(private readonly nc: NatsConnection, private readonly o: EventConsumerOptions) {}

  async start(): Promise<void> {
    void this.watchConnection();
    await this.subscribe();
  }

  /** Ends consuming; what was delivered has been passed to onMessage when it settles. */
  async stop(): Promise<void> {
    this.halt();
    await this.messages?.close();
    await this.consuming;
  }

  /** Stops re-subscribing, at once (the connection is being closed under it). */
  halt(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
  }

  /** (Re)makes the durable consumer at the cursor and consumes from it. */
  private async subscribe(): Promise<void> {
    const jsm = await jetstreamManager(this.nc);
    const cursor = this.o.cursor();
    await jsm.consumers.delete(STREAM, CONSUMER).catch(() => false);
    await jsm.consumers.add(STREAM, {
      durable_name: CONSUMER,
      ack_policy: AckPolicy.All,
      ...(cursor > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: cursor + 1 } : { deliver_policy: DeliverPolicy.All }),
      ack_wait: 60_000_000_000,
      max_ack_pending: 100_000,
    });
    const consumer = await jetstream(this.nc).consumers.get(STREAM, CONSUMER);
    const messages = await consumer.consume({ max_messages: 2000 });
    this.messages = messages;
    this.consuming = this.consume(messages).then(
      () => { this.broken(new Error('the consumer ended')); },
      (err: unknown) => { this.broken(err); },
    );
  }

  /**
   * After a reconnect, consume again from the checkpoint: what the server had sent on the lost
   * connection is gone, while JetStream counts it as delivered (and nats-server cuts a client that
   * reads too slowly, no fault needed). The consumer would go on after it, and the next ack
   * (AckAll) would take it along; without newer messages, it would wait out ack_wait.
   */
  private async watchConnection(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type !== 'reconnect' || this.stopped) continue;
      this.o.log.warn({}, 'reconnected to NATS: consuming again from the checkpoint (deliveries on the lost connection are gone)');
      this.reconnects++;
      // Ends the consume loop; broken() subscribes again at the cursor.
      void this.messages?.close().catch(() => undefined);
    }
  }

  /** The consumer's iterator ended or failed (its consumer gone, the server away too long): start over after a pause. */
  private broken(err: unknown): void {
    if (this.stopped) return;
    this.o.log.warn({ err: String(err) }, 'the event stream consumer broke; subscribing again at the checkpoint');
    // One retry at a time, whatever broke it how often (a reconnect storm).
    const retry = (): void => {
      this.retryTimer = undefined;
      if (this.stopped) return;
      this.subscribe().catch((e: unknown) => {
        this.o.log.warn({ err: String(e) }, 'subscribing again failed; retrying');
        this.retryTimer ??= setTimeout(retry, 2000);
      });
    };
    this.retryTimer ??= setTimeout(retry, 1000);
  }

  private async consume(messages: ConsumerMessages): Promise<void> {
    let delivered: number | undefined;
    for await (const m of messages) {
      // Every delivery of the consumer, in order: one missing was sent to this connection and lost
      // on the way (nats-server cuts a client that reads too slowly, and the client reconnects
      // with its consumer going on after them). The next checkpoint's ack (AckAll) would take it
      // along and it would never come again: start over at the checkpoint, before applying more.
      const at = m.info.deliverySequence;
      if (delivered !== undefined && at !== delivered + 1) {
        this.deliveryGaps++;
        // Not awaited: close() settles when this loop has ended, which it does by the throw.
        void messages.close().catch(() => undefined);
        throw new Error(`deliveries ${delivered + 1}..${at - 1} of the consumer never arrived (stream sequence ${m.seq} came after ${this.lastSeq})`);
      }
      delivered = at;
      this.lastSeq = m.seq;
      this.o.onMessage(m);
    }
  }
}
