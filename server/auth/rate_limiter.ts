/**
 * Token buckets per caller: `ratePerSecond` messages a second on average,
 * bursts of up to `burst`.
 *
 * Buckets are kept by key (a user, or a connection when auth is off). A
 * bucket that has refilled completely says nothing a fresh one would not,
 * so it is dropped when the map grows: memory follows the callers sending
 * now, not every caller ever seen.
 *
 * @example
 * ```ts
 * const limiter = new RateLimiter({ ratePerSecond: 10, burst: 20 });
 * const wait = limiter.take("alice", Date.now()); // 0: allowed
 * ```
 *
 * @module
 */

/** Options of {@linkcode RateLimiter}. */
export interface RateLimiterOptions {
  /** Messages per second, refilled continuously; > 0. */
  ratePerSecond: number;
  /** Bucket size: messages allowed at once after a quiet spell; >= 1. */
  burst: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

/** Per-key token buckets. */
export class RateLimiter {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, Bucket>();
  /** Map size that triggers the next sweep of full buckets. */
  #sweepAt = 1024;

  constructor(options: RateLimiterOptions) {
    if (!(options.ratePerSecond > 0) || !(options.burst >= 1)) {
      throw new RangeError("rate must be > 0 and burst >= 1");
    }
    this.#perMs = options.ratePerSecond / 1000;
    this.#burst = options.burst;
  }

  /** Keys with a bucket now (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes one token for `key`. Returns 0 when allowed, else the ms until a
   * token is available (nothing is taken then).
   */
  take(key: string, nowMs: number): number {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#sweepAt) this.#sweep(nowMs);
      bucket = { tokens: this.#burst, atMs: nowMs };
      this.#buckets.set(key, bucket);
    } else if (nowMs > bucket.atMs) {
      bucket.tokens = Math.min(
        this.#burst,
        bucket.tokens + (nowMs - bucket.atMs) * this.#perMs,
      );
      bucket.atMs = nowMs;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / this.#perMs);
  }

  #sweep(nowMs: number): void {
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (nowMs - b.atMs) * this.#perMs >= this.#burst) {
        this.#buckets.delete(key);
      }
    }
    this.#sweepAt = Math.max(1024, this.#buckets.size * 2);
  }
}
