/**
 * Concurrent holders per key (subscriptions per user or connection): a
 * count that `acquire()` raises and its release lowers, once.
 *
 * @module
 */

/** Per-key counts with a ceiling. */
export class ConcurrencyLimit {
  readonly #counts = new Map<string, number>();

  constructor(readonly max: number) {
    if (!(Number.isInteger(max) && max >= 1)) {
      throw new RangeError(`max must be a positive integer, got ${max}`);
    }
  }

  /** Holders of `key` now. */
  count(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  /**
   * Takes a slot for `key`: a release function (idempotent), or undefined
   * when `key` already holds `max`.
   */
  acquire(key: string): (() => void) | undefined {
    const n = this.#counts.get(key) ?? 0;
    if (n >= this.max) return undefined;
    this.#counts.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.#counts.get(key)! - 1;
      if (left === 0) this.#counts.delete(key);
      else this.#counts.set(key, left);
    };
  }
}
