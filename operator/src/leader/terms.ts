// The leader's roles, run for each term of leadership. Every transition goes
// through one ordered chain, and each term has its own AbortSignal (as
// client-go's leader election cancels its context): a lease lost while the
// roles are still starting aborts the start (each role checks the signal
// between its steps and closes itself), and whatever did start is stopped
// before the next term begins. `leading` is true only while a term's roles
// all run and the term has not ended.
import type { Logger } from 'pino';

export interface Stoppable {
  stop(): Promise<void>;
}

/** Starts one role; rejects (closed) when the signal aborts first. */
export type RoleStarter = (signal: AbortSignal) => Promise<Stoppable>;

interface Term {
  readonly abort: AbortController;
  readonly parts: Stoppable[];
  running: boolean;
}

export class LeaderTerms {
  private chain: Promise<void> = Promise.resolve();
  private term: Term | undefined;
  /** Terms begun, for tests. */
  terms = 0;

  constructor(
    private readonly roles: readonly RoleStarter[],
    private readonly log: Logger,
    private readonly o: { onLeading?: (leading: boolean) => void; onFailed?: (err: unknown) => void } = {},
  ) {}

  /** True while this replica's leader roles all run, in a term that has not ended. */
  get leading(): boolean {
    return this.term?.running === true && !this.term.abort.signal.aborted;
  }

  /** Leadership won: the roles start, after whatever the last term still has to stop. */
  begin(): void {
    this.end();
    const term: Term = { abort: new AbortController(), parts: [], running: false };
    this.term = term;
    this.terms++;
    this.enqueue(async () => {
      try {
        for (const start of this.roles) {
          term.abort.signal.throwIfAborted();
          term.parts.push(await start(term.abort.signal));
        }
        term.abort.signal.throwIfAborted();
      } catch (err) {
        await this.stopParts(term);
        if (term.abort.signal.aborted) {
          this.log.info('leadership ended while the leader roles were starting; stopped them');
          return;
        }
        this.o.onFailed?.(err);
        return;
      }
      term.running = true;
      this.o.onLeading?.(true);
    });
  }

  /** Leadership lost (or given up): the term's signal aborts now, its roles stop in order. */
  end(): void {
    const term = this.term;
    if (!term) return;
    this.term = undefined;
    term.abort.abort();
    this.enqueue(async () => {
      if (term.running) {
        term.running = false;
        this.o.onLeading?.(false);
      }
      await this.stopParts(term);
    });
  }

  /** Ends the term and waits until every transition is done. */
  async stop(): Promise<void> {
    this.end();
    await this.chain;
  }

  private async stopParts(term: Term): Promise<void> {
    const parts = term.parts.splice(0);
    await Promise.all(parts.map((p) => p.stop().catch((err: unknown) => { this.log.warn({ err: String(err) }, 'a leader role did not stop cleanly'); })));
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch((err: unknown) => { this.log.error({ err: String(err) }, 'a leadership transition failed'); });
  }
}
