import type { Clock } from '../../src/util/time.js';

/**
 * A clock that moves only when a test moves it, for EngineOptions.clock: tests that need two
 * moments apart advance it instead of sleeping until the wall clock has moved on.
 */
export class TestClock {
  private ms: number;

  /** Starts at the real time, so that times still read as plausible dates. */
  constructor(start = Date.now()) {
    this.ms = start;
  }

  readonly now: Clock = () => this.ms;

  /** Moves the clock on by `ms` (at least 1) and returns the moment before the move. */
  advance(ms = 1): number {
    const before = this.ms;
    this.ms += Math.max(1, ms);
    return before;
  }
}
