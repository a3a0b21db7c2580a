import type { Logger } from '../util/log.js';
import { apiMessage, statusCode } from './kube.js';

/** What a reconcile asks for next: nothing, or another look after a while. */
export interface Outcome {
  requeueAfterMs?: number;
}

export interface WorkQueueOptions {
  /** Reconciles running at once, over different keys. */
  concurrency?: number;
  /** First retry delay after a failure; it doubles per failure up to `maxBackoffMs`. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Told the outcome and duration of every reconcile, for metrics. */
  observe?: (queue: string, result: 'success' | 'error' | 'conflict', seconds: number) => void;
}

/**
 * A queue of object keys ("namespace/name") with the guarantees a reconciler needs: a key is
 * reconciled by one worker at a time, a key added while it runs is reconciled once more
 * afterwards (so no event is lost), and a failing key is retried with a growing delay instead
 * of in a hot loop.
 */
export class WorkQueue {
  private readonly pending = new Set<string>();
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private readonly order: string[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private stopped = false;
  private readonly concurrency: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly observe: WorkQueueOptions['observe'];

  constructor(
    private readonly name: string,
    private readonly worker: (key: string) => Promise<Outcome | void>,
    private readonly logger: Logger,
    options: WorkQueueOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 4;
    this.baseBackoffMs = options.baseBackoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.observe = options.observe;
  }

  /** Queues a key now, or after `delayMs` (an earlier request for the key wins). */
  add(key: string, delayMs = 0): void {
    if (this.stopped) return;
    if (delayMs > 0) {
      if (this.timers.has(key)) return;
      const timer = setTimeout(() => {
        this.timers.delete(key);
        this.add(key);
      }, delayMs);
      timer.unref();
      this.timers.set(key, timer);
      return;
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.pending.has(key)) return;
    this.pending.add(key);
    this.order.push(key);
    this.pump();
  }

  /** Stops taking work; resolves once running reconciles have finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.pending.clear();
    this.order.length = 0;
    if (this.running.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.concurrency && this.order.length > 0) {
      const key = this.order.shift()!;
      this.pending.delete(key);
      this.running.add(key);
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const outcome = await this.worker(key);
      this.observe?.(this.name, 'success', seconds());
      this.failures.delete(key);
      if (outcome?.requeueAfterMs !== undefined) this.add(key, outcome.requeueAfterMs);
    } catch (err) {
      if (statusCode(err) === 409) {
        this.observe?.(this.name, 'conflict', seconds());
        // Someone changed the object since it was read (often our own previous write): read
        // it again soon; this is no failure.
        this.logger.debug('object changed under the reconcile; reading it again', { queue: this.name, object: key });
        this.add(key, 100);
        return;
      }
      this.observe?.(this.name, 'error', seconds());
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      const delay = Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** (failures - 1));
      this.logger.warn('reconcile failed; retrying', { queue: this.name, object: key, failures, retryInMs: delay, error: apiMessage(err) });
      this.add(key, delay);
    } finally {
      this.running.delete(key);
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
      if (this.running.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }
}
