/**
 * The server-wide budget for NBD payloads held in memory: write payloads being received and
 * run, read replies being read and waiting to be sent. Per-connection limits alone do not
 * bound the daemon: a few hundred clients that each stay under them (or never read their
 * replies) would still take more memory than a node has. Once the budget is spent,
 * connections stop reading requests from their sockets, so clients are held back by TCP (or
 * unix socket) back-pressure instead of by the kernel's OOM killer.
 *
 * A request is admitted while the budget is not spent and then charged in full, so the total
 * can exceed the budget by at most one request: the admission check is the only thing that
 * can pause a connection, and a connection that was admitted can always finish its request,
 * which is what keeps clients from deadlocking each other on it.
 */
export class PayloadBudget {
  private used = 0;
  /** Paused connections, woken in the order they paused. */
  private readonly waiting = new Set<() => void>();
  private waking = false;

  constructor(readonly limit: number) {}

  /** Bytes charged now, by every connection. */
  get bytes(): number {
    return this.used;
  }

  /** True while no new request may be admitted. */
  get exhausted(): boolean {
    return this.used >= this.limit;
  }

  /** An account for one connection, so that what it still holds can be given back at once when it ends. */
  account(): PayloadAccount {
    return new PayloadAccount(this);
  }

  /** Calls `resume` once bytes have been given back; a second wait with the same callback is one wait. */
  wait(resume: () => void): void {
    this.waiting.add(resume);
  }

  cancel(resume: () => void): void {
    this.waiting.delete(resume);
  }

  /** @internal: PayloadAccount's side. */
  charge(bytes: number): void {
    this.used += bytes;
  }

  /** @internal: PayloadAccount's side. */
  refund(bytes: number): void {
    this.used -= bytes;
    this.wake();
  }

  /**
   * Resumes paused connections one at a time while there is room: a resumed connection may
   * admit a request at once and spend the room again, and those not resumed keep their turn.
   */
  private wake(): void {
    if (this.waking) return;
    this.waking = true;
    try {
      while (!this.exhausted && this.waiting.size > 0) {
        const next = this.waiting.values().next().value!;
        this.waiting.delete(next);
        next();
      }
    } finally {
      this.waking = false;
    }
  }
}

/** One connection's share of the budget. After `close`, gives are ignored: all was returned. */
export class PayloadAccount {
  private held = 0;
  private closed = false;

  constructor(private readonly budget: PayloadBudget) {}

  get exhausted(): boolean {
    return this.budget.exhausted;
  }

  /** Bytes this connection holds now. */
  get bytes(): number {
    return this.held;
  }

  take(bytes: number): void {
    if (this.closed || bytes === 0) return;
    this.held += bytes;
    this.budget.charge(bytes);
  }

  give(bytes: number): void {
    if (this.closed || bytes === 0) return;
    this.held -= bytes;
    this.budget.refund(bytes);
  }

  /** See PayloadBudget.wait. */
  wait(resume: () => void): void {
    if (!this.closed) this.budget.wait(resume);
  }

  cancel(resume: () => void): void {
    this.budget.cancel(resume);
  }

  /** Returns everything still held; for a connection whose requests have all finished. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const held = this.held;
    this.held = 0;
    if (held > 0) this.budget.refund(held);
  }
}
