import { TidemarkError } from '../util/errors.js';
import { Mutex } from '../util/mutex.js';

declare const heldBrand: unique symbol;

/**
 * Proof that the caller is inside a volume's critical section. Nothing outside this module
 * can make one: methods that need the lock take it as their first argument, so calling them
 * without the lock is a type error rather than a comment ignored. At run time a token also
 * names its lock and dies when its section ends, so one kept past the end, or handed to
 * another volume, fails loudly instead of racing.
 */
export interface Held {
  readonly [heldBrand]: true;
}

class Token {
  live = true;
  constructor(readonly lock: VolumeLock) {}
}

/** A volume's mutex, whose critical sections hand out `Held` tokens. */
export class VolumeLock {
  private readonly mutex = new Mutex();

  constructor(private readonly owner: string) {}

  /** Runs `fn` alone: first come, first served, one section at a time. */
  run<T>(fn: (held: Held) => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      const token = new Token(this);
      try {
        return await fn(token as unknown as Held);
      } finally {
        token.live = false;
      }
    });
  }

  /** Throws unless `held` comes from a section of this lock that has not ended. */
  check(held: Held): void {
    const token = held as unknown as Token;
    if (!(token instanceof Token) || token.lock !== this || !token.live) {
      throw new TidemarkError('INTERNAL', `${this.owner}: an operation that needs the volume lock ran without it`);
    }
  }
}
