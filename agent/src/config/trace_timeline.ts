// Which traces a record belongs to is decided by the configuration in force
// when its section ended, not when the agent gets to it: a record still in a
// kernel ring or the agent's queue when a threshold is raised happened under
// the old one and counts as it did then. A trace that no longer exists takes
// nothing more, whenever the section was.
import type { Kind } from '../records/layout.js';
import { TraceMatcher } from './traces.js';
import type { Trace } from './traces.js';

/** Configurations kept for records still on their way; older records are judged by the oldest kept. */
const KEPT = 16;
const NO_TRACES: readonly Trace[] = [];
const NO_MATCH: string[] = [];

interface Epoch {
  /** CLOCK_MONOTONIC ns from which this configuration applies (records carry the same clock). */
  sinceNs: bigint;
  matcher: TraceMatcher;
}

export interface TimedSection {
  kind: Kind;
  irq: number;
  /** CLOCK_MONOTONIC ns. */
  startNs: bigint;
  durationNs: bigint;
}

export class TraceTimeline {
  /** Oldest first; none until the first configuration. */
  private epochs: Epoch[] = [];

  /** The traces in force now. */
  get current(): readonly Trace[] {
    return this.latest?.matcher.traces ?? NO_TRACES;
  }

  /**
   * The traces from sinceNs on. The first configuration applies to every
   * record (the kernel side starts after it); a later one to the sections
   * that end at or after sinceNs.
   */
  set(traces: readonly Trace[], sinceNs: bigint): void {
    const latest = this.latest;
    if (!latest) {
      this.epochs = [{ sinceNs: 0n, matcher: new TraceMatcher(traces) }];
      return;
    }
    const names = new Set(traces.map((t) => t.name));
    const kept = this.epochs.slice(-(KEPT - 1)).map((e) => {
      const still = e.matcher.traces.filter((t) => names.has(t.name));
      return still.length === e.matcher.traces.length ? e : { sinceNs: e.sinceNs, matcher: new TraceMatcher(still) };
    });
    this.epochs = [...kept, { sinceNs: sinceNs > latest.sinceNs ? sinceNs : latest.sinceNs, matcher: new TraceMatcher(traces) }];
  }

  /** The names of the traces the section belongs to (shared: do not change the array). */
  match(section: TimedSection): string[] {
    const endNs = section.startNs + section.durationNs;
    let i = this.epochs.length - 1;
    while (i > 0 && (this.epochs[i]?.sinceNs ?? 0n) > endNs) i--;
    return this.epochs[i]?.matcher.match(section) ?? NO_MATCH;
  }

  private get latest(): Epoch | undefined {
    return this.epochs.at(-1);
  }
}
