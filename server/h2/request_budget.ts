/**
 * A bound on request bytes the core holds for unfinished gRPC messages.
 *
 * A message is assembled whole before its handler sees it, so a peer that
 * sends a large length prefix and then the body slowly (or never) makes the
 * server hold everything sent so far; with 1,000 streams per connection and
 * a 10 MiB message limit that is 10 GiB a connection. The budget caps those
 * bytes per connection and across every connection of a listener; the
 * stream that would cross a cap is answered RESOURCE_EXHAUSTED, and a
 * connection that keeps crossing it is ended with ENHANCE_YOUR_CALM
 * (server/h2/connection.ts). Bytes are given back as messages complete and
 * as streams end.
 *
 * @example
 * ```ts
 * const budget = new RequestBudget(64 * 2 ** 20, 512 * 2 ** 20);
 * budget.add(1024);
 * budget.used; // 1024
 * ```
 *
 * @module
 */

/** The default caps: 64 MiB per connection, 512 MiB in all. */
export const DEFAULT_REQUEST_BUDGET = Object.freeze({
  perConnection: 64 * 1024 * 1024,
  total: 512 * 1024 * 1024,
});

/** Caps and the running total of held, unfinished request bytes. */
export class RequestBudget {
  #used = 0;

  constructor(
    /** Most bytes one connection's streams may hold. */
    readonly perConnection: number,
    /** Most bytes all connections together may hold. */
    readonly total: number,
  ) {}

  /** Unfinished request bytes held now, across all connections. */
  get used(): number {
    return this.#used;
  }

  /** Adds `delta` bytes (negative when bytes are given back). */
  add(delta: number): void {
    this.#used += delta;
  }
}
