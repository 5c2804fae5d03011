/**
 * A bound on request bytes the core holds: those of unfinished gRPC
 * messages, and (for the process-wide bound) those received and not yet
 * read by their handlers.
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
 * Bytes a handler has not read yet (a paused stream: a Chat whose client
 * does not read its echoes) are bounded per connection by the HTTP/2
 * windows (16 MiB), but not across connections; they count against the
 * process-wide total too.
 *
 * @example
 * ```ts
 * const budget = new RequestBudget(64 * 2 ** 20, 512 * 2 ** 20);
 * budget.add(1024);
 * budget.unfinished; // 1024
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
  #unfinished = 0;
  #queued = 0;

  constructor(
    /** Most bytes one connection's streams may hold. */
    readonly perConnection: number,
    /** Most bytes all connections together may hold. */
    readonly total: number,
  ) {}

  /** Bytes of unfinished request messages held now, in all connections. */
  get unfinished(): number {
    return this.#unfinished;
  }

  /** Request bytes received and not yet read by a handler, in all. */
  get queued(): number {
    return this.#queued;
  }

  /** What counts against `total`: both of the above. */
  get used(): number {
    return this.#unfinished + this.#queued;
  }

  /** Adds `delta` unfinished bytes (negative when given back). */
  add(delta: number): void {
    this.#unfinished += delta;
  }

  /** Adds `delta` unread bytes (negative when read or dropped). */
  addQueued(delta: number): void {
    this.#queued += delta;
  }
}
