// The agent's local service (proto/irqtrace/v1/local.proto): its events, as
// its pipeline makes them, to readers on this machine (`irqtrace record` run
// beside the agent, or in its pod with `kubectl exec`). A unix socket that
// only root may open: the events name processes, files and sockets.
// A reader slower than the agent loses events, counted and told; it never
// holds up the agent: each reader's queue is the stream's own buffer, and
// nothing more is written to it until it drains.
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { agentLocalServiceDefinition, irqtrace, toBigInt } from '@irqtrace/proto';
import type { AgentLocalHandlers, WatchCall } from '@irqtrace/proto';
import type { Logger as Pino } from 'pino';

export interface LocalWatchOptions {
  /** The unix socket's path. */
  socket: string;
  /** The first message of every stream: the agent now. */
  info: () => irqtrace.v1.IAgentInfo;
  log: Pino;
}

class Watcher {
  private blocked = false;
  /** Events not written since the last loss message. */
  private lost = 0;
  /** Events this reader lost in all. */
  lostTotal = 0;

  constructor(
    private readonly call: WatchCall,
    private readonly minDurationNs: bigint,
  ) {}

  offer(event: irqtrace.v1.IEvent, durationNs: bigint): void {
    if (durationNs < this.minDurationNs) return;
    if (this.blocked) {
      this.lost++;
      this.lostTotal++;
      return;
    }
    this.write({ event });
  }

  private write(message: irqtrace.v1.IWatchMessage): void {
    if (this.call.write(message)) return;
    this.blocked = true;
    this.call.once('drain', () => {
      this.blocked = false;
      if (!this.lost) return;
      const count = this.lost;
      this.lost = 0;
      this.write({ loss: { count } });
    });
  }

  end(): void {
    this.call.end();
  }
}

export class LocalWatchServer {
  private readonly server = new grpc.Server();
  private readonly watchers = new Set<Watcher>();
  private bound = false;

  constructor(private readonly o: LocalWatchOptions) {
    const handlers: AgentLocalHandlers = { watch: (call: WatchCall) => { this.watch(call); } };
    this.server.addService(agentLocalServiceDefinition, handlers);
  }

  /** Readers now. */
  get readers(): number {
    return this.watchers.size;
  }

  async start(): Promise<void> {
    await mkdir(dirname(this.o.socket), { recursive: true, mode: 0o700 });
    // A socket left by an agent that was killed: this node runs one agent, this one.
    await rm(this.o.socket, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix:${this.o.socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(err);
        else resolve();
      });
    });
    this.bound = true;
    await chmod(this.o.socket, 0o600);
    this.o.log.info({ socket: this.o.socket }, 'local event stream listening');
  }

  /** An event the agent made; durationNs is its section's. */
  publish(event: irqtrace.v1.IEvent, durationNs: bigint): void {
    for (const w of this.watchers) w.offer(event, durationNs);
  }

  private watch(call: WatchCall): void {
    const watcher = new Watcher(call, toBigInt(call.request.minDurationNs));
    this.watchers.add(watcher);
    const gone = (): void => {
      if (!this.watchers.delete(watcher)) return;
      this.o.log.info({ lost: watcher.lostTotal }, 'local reader gone');
    };
    call.on('cancelled', gone);
    call.on('close', gone);
    call.on('error', gone);
    call.write({ agent: this.o.info() });
    this.o.log.info({ readers: this.watchers.size }, 'local reader connected');
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.end();
    this.watchers.clear();
    if (!this.bound) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.server.forceShutdown(); resolve(); }, 1000);
      this.server.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
    await rm(this.o.socket, { force: true });
  }
}
