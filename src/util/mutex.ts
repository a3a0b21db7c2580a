/** A first-come, first-served async lock. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private held = 0;

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    this.held++;
    try {
      await previous;
      return await fn();
    } finally {
      this.held--;
      release();
    }
  }

  get busy(): boolean {
    return this.held > 0;
  }
}
