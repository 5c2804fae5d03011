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
 * (http2/server/connection.ts). Bytes are given back as messages complete and
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
import type { EnvelopeMeter } from "../../protocol/envelope.ts";
import { ErrorCode, H2ConnectionError } from "../../protocol/http2/frames.ts";

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

/** Streams over the request budget after which the connection is ended. */
const BUDGET_STRIKES = 3;

/** A stream's share of the budget, kept on the stream. */
export interface MeteredStream {
  /** Tracks gRPC message boundaries of the request. */
  meter: EnvelopeMeter | undefined;
  /** Request bytes of the unfinished message, charged to the budget. */
  unfinishedBytes: number;
  readonly destroyed: boolean;
  close(code: number): void;
}

/** Who hears of a stream over the budget. */
export interface BudgetOwner<S> {
  /** Answer `stream` (it is reset with ENHANCE_YOUR_CALM afterwards). */
  onOverBudget?(stream: S, reason: string): void;
  onError?(error: unknown): void;
}

/** One connection's unfinished request bytes, charged to a shared budget. */
export class RequestMeter {
  readonly #budget: RequestBudget;
  #unfinished = 0;
  #strikes = 0;

  constructor(budget: RequestBudget) {
    this.#budget = budget;
  }

  /** Unfinished request bytes of this connection's streams. */
  get unfinished(): number {
    return this.#unfinished;
  }

  /**
   * Charges `s`'s unfinished request bytes after `data`; false (and the
   * stream answered and reset) when that goes over the connection's or the
   * listener's budget. Throws ENHANCE_YOUR_CALM for a connection that keeps
   * at it.
   */
  take<S extends MeteredStream>(
    s: S,
    data: Uint8Array,
    owner: BudgetOwner<S>,
  ): boolean {
    const unfinished = s.meter!.push(data);
    const delta = unfinished - s.unfinishedBytes;
    s.unfinishedBytes = unfinished;
    this.#charge(delta);
    const budget = this.#budget;
    const reason = delta > 0 && this.#unfinished > budget.perConnection
      ? `unfinished request messages above ${budget.perConnection} bytes on this connection`
      : budget.used > budget.total
      ? `request bytes held above ${budget.total} in all`
      : undefined;
    if (reason === undefined) return true;
    if (++this.#strikes >= BUDGET_STRIKES) {
      throw new H2ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `${BUDGET_STRIKES} streams went over the request budget`,
      );
    }
    try {
      owner.onOverBudget?.(s, reason);
    } catch (e) {
      owner.onError?.(e);
    }
    if (!s.destroyed) s.close(ErrorCode.ENHANCE_YOUR_CALM);
    return false;
  }

  /** `s` ended: its unfinished bytes are given back. */
  release(s: MeteredStream): void {
    if (s.unfinishedBytes > 0) {
      this.#charge(-s.unfinishedBytes);
      s.unfinishedBytes = 0;
    }
  }

  #charge(delta: number): void {
    this.#unfinished += delta;
    this.#budget.add(delta);
  }
}
