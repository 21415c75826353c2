// Records wait here for their asynchronous attribution, one at a time and in
// order. Bounded: past the bound a record is refused and the caller counts it.
export class SerialQueue<T> {
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;

  constructor(
    private readonly work: (item: T) => Promise<void>,
    private readonly onError: (err: unknown) => void,
    private readonly max = 10_000,
  ) {}

  /** Queues item; false (nothing queued) when the queue is full. */
  push(item: T): boolean {
    if (this.pending >= this.max) return false;
    this.pending++;
    this.tail = this.tail
      .then(() => this.work(item))
      .catch(this.onError)
      .finally(() => { this.pending--; });
    return true;
  }

  /** Resolves when everything queued so far is done. */
  drained(): Promise<void> {
    return this.tail;
  }
}
