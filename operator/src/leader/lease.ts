// Leader election on a coordination.k8s.io Lease, as client-go's
// leaderelection does: the holder renews every retry period; another
// candidate takes the lease only after it has seen the same record, unrenewed,
// for a whole lease duration (by its own clock: no trust in other clocks).
// Writes carry the resourceVersion read, so two candidates never both win.
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { isStatus } from '../kube.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  /** This candidate (pod name, or host and pid). */
  identity: string;
  leaseDurationMs?: number;
  /** A leader that could not renew for this long stops leading. */
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  log: Logger;
}


export class LeaderElector {
  private readonly api: k8s.CoordinationV1Api;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenewed = 0;
  /** The other holder's record as last seen, and when we first saw it so. */
  private observed: { key: string; at: number } | undefined;
  private stopped = false;
  /** The attempt under way: stop() waits for it, or its write could make a stopped elector lead again. */
  private attempt: Promise<void> | undefined;
  /** Leadership changes, for metrics and tests. */
  transitions = 0;

  constructor(
    kubeConfig: k8s.KubeConfig,
    private readonly o: LeaderElectionOptions,
  ) {
    this.api = kubeConfig.makeApiClient(k8s.CoordinationV1Api);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    const tick = async (): Promise<void> => {
      // Set before any await: a stop() from here on waits for this attempt.
      this.attempt = this.tryAcquireOrRenew();
      await this.attempt;
      if (!this.stopped) this.timer = setTimeout(() => { void tick(); }, this.o.retryPeriodMs ?? 2000);
    };
    void tick();
  }

  /** Stops campaigning; a leader releases the lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    // An attempt that wins after this point still holds the lease: it is released below like any.
    await this.attempt;
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
      if (lease.spec?.holderIdentity !== this.o.identity) return;
      lease.spec.holderIdentity = '';
      lease.spec.leaseDurationSeconds = 1;
      await this.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: lease });
    } catch (err) {
      this.o.log.warn({ err: String(err) }, 'could not release the leader lease; it expires by itself');
    }
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.transitions++;
    this.o.log.info({ lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity, leading }, leading ? 'became the leader' : 'stopped leading');
    if (leading) this.o.onStartedLeading();
    else this.o.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const now = Date.now();
    const durationMs = this.o.leaseDurationMs ?? 15_000;
    try {
      let lease: k8s.V1Lease;
      try {
        lease = await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
      } catch (err) {
        if (!isStatus(err, 404)) throw err;
        await this.api.createNamespacedLease({ namespace: this.o.namespace, body: this.record(undefined, 0) });
        this.renewed(now);
        return;
      }
      const spec = lease.spec ?? {};
      const holder = spec.holderIdentity ?? '';
      if (holder && holder !== this.o.identity) {
        // (client-node hands MicroTimes out as the strings they were sent as, whatever their type says.)
        const key = `${holder}/${String(spec.renewTime)}/${String(spec.leaseTransitions ?? 0)}`;
        if (this.observed?.key !== key) this.observed = { key, at: now };
        const held = (spec.leaseDurationSeconds ?? durationMs / 1000) * 1000;
        if (now - this.observed.at < held) {
          this.setLeading(false);
          return;
        }
      }
      const transitions = (spec.leaseTransitions ?? 0) + (holder === this.o.identity ? 0 : 1);
      const body = this.record(holder === this.o.identity ? spec.acquireTime : undefined, transitions, lease.metadata?.resourceVersion);
      await this.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body });
      this.renewed(now);
    } catch (err) {
      // 409: someone else wrote first. Anything else: the API server is away.
      if (!isStatus(err, 409)) this.o.log.warn({ err: String(err) }, 'leader lease not renewed');
      if (this.leading && now - this.lastRenewed > (this.o.renewDeadlineMs ?? 10_000)) this.setLeading(false);
      else if (!this.leading) this.setLeading(false);
    }
  }

  private renewed(now: number): void {
    this.lastRenewed = now;
    this.observed = undefined;
    this.setLeading(true);
  }

  /** The lease held by us; with the resourceVersion read, a write fails if someone wrote since. */
  private record(acquired: Date | undefined, transitions: number, resourceVersion?: string): k8s.V1Lease {
    const now = new k8s.V1MicroTime();
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.o.name, namespace: this.o.namespace, ...(resourceVersion ? { resourceVersion } : {}) },
      spec: {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: Math.ceil((this.o.leaseDurationMs ?? 15_000) / 1000),
        acquireTime: acquired ? new k8s.V1MicroTime(acquired) : now,
        renewTime: now,
        leaseTransitions: transitions,
      },
    };
  }
}
