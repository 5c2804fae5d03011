/**
 * A typed line the server did not take, sent again by itself with a
 * backoff while the failure may pass (the core's store down, a deadline):
 * every try carries the line's idempotency key, so a try that was stored
 * after all cannot show twice. A refusal that will not pass (a bad token, a
 * bad message) waits for the Retry button instead.
 *
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** Codes after which the same send may succeed later. */
const PASSING = new Set<Code>([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
]);

/** Whether a send that failed with `err` is worth trying again by itself. */
export function mayPass(err: unknown): boolean {
  return passingCode(ConnectError.from(err).code);
}

/** Whether a failure with gRPC status `code` may pass if sent again. */
export function passingCode(code: number): boolean {
  return PASSING.has(code);
}

export interface RetryOptions {
  /** The first wait, in ms; it doubles up to `maxMs`. */
  firstMs: number;
  maxMs: number;
  /** Tries at most (a server's own INTERNAL would come back for ever). */
  tries: number;
}

export const SEND_RETRY: RetryOptions = {
  firstMs: 1000,
  maxMs: 30_000,
  tries: 10,
};

/**
 * Calls `retry` after a wait, again after twice the wait, ... until it
 * resolves true (sent), `keepGoing()` says no (sent another way, the room
 * left, a failure that will not pass), or the tries are spent.
 */
export function retryUntilSent(
  retry: () => Promise<boolean>,
  keepGoing: () => boolean,
  options: RetryOptions = SEND_RETRY,
): void {
  let wait = options.firstMs;
  let left = options.tries;
  const next = () => {
    setTimeout(async () => {
      if (!keepGoing()) return;
      if (await retry() || --left <= 0) return;
      wait = Math.min(wait * 2, options.maxMs);
      next();
    }, wait);
  };
  next();
}

/**
 * 128 random bits in hex, for an idempotency key. Not crypto.randomUUID():
 * browsers have it only in secure contexts, and the page may be served over
 * plain http.
 */
export function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
