/**
 * Keeps a server stream open: reopens it with backoff whenever it ends or fails.
 *
 * A room subscription or metrics feed is meant to last as long as the page; a
 * restarted core, an edge deploy or a dropped connection ends the stream, and
 * the page should come back by itself and tell the user what it is doing.
 *
 * @module
 */
import type { PageGate } from "./page_gate.ts";

/** What the stream is doing now, for the status line. */
export type StreamState =
  | { kind: "connecting"; attempt: number }
  | { kind: "live" }
  | { kind: "retrying"; inMs: number; reason: string }
  /** Ended for good: `fatal` said no retry can help. */
  | { kind: "failed"; reason: string }
  /** Closed while the page is hidden; reopens, resuming, when it is shown. */
  | { kind: "paused" };

/** Options: how to open the stream and what to do with what it says. */
export interface ResilientOptions<T> {
  open(signal: AbortSignal): AsyncIterable<T>;
  /** Returning "reopen" ends this stream and opens the next one at once. */
  onMessage(message: T): void | "reopen";
  onState(state: StreamState): void;
  signal: AbortSignal;
  /**
   * The page's gate: the stream ends when the page is hidden (or kept in the
   * back/forward cache) and opens again, without backoff, when it is shown.
   */
  gate?: PageGate;
  /**
   * Errors no retry can fix (a refused token, say): the stream stops with a
   * `failed` state instead of retrying. By default every error is retried.
   */
  fatal?(err: unknown): boolean;
  /** First retry delay; doubles per failure up to `maxDelayMs`. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** Runs until `signal` aborts; resolves then, never rejects. */
export async function keepStreaming<T>(
  options: ResilientOptions<T>,
): Promise<void> {
  const { signal, gate } = options;
  const minDelay = options.minDelayMs ?? 500;
  const maxDelay = options.maxDelayMs ?? 5000;
  let delay = minDelay;
  let attempt = 0;
  while (!signal.aborted) {
    if (gate && !gate.open) {
      options.onState({ kind: "paused" });
      await gate.shown(signal);
      if (signal.aborted) return;
      delay = minDelay;
    }
    attempt++;
    options.onState({ kind: "connecting", attempt });
    let reason = "stream ended";
    const thisStream = new AbortController();
    // One visit of the page: a stream it outlives is ended, not left open.
    const visit = gate?.visit ?? signal;
    try {
      let first = true;
      const stream = options.open(
        AbortSignal.any([signal, thisStream.signal, visit]),
      );
      for await (const message of stream) {
        if (first) {
          // Only a stream that delivered something resets the backoff; one
          // that fails at once keeps backing off.
          first = false;
          delay = minDelay;
          options.onState({ kind: "live" });
        }
        if (options.onMessage(message) === "reopen") {
          thisStream.abort();
          break;
        }
      }
      if (thisStream.signal.aborted) continue;
    } catch (err) {
      reason = err instanceof Error ? err.message : String(err);
      if (!signal.aborted && !visit.aborted && options.fatal?.(err)) {
        return options.onState({ kind: "failed", reason });
      }
    }
    if (signal.aborted) return;
    if (visit.aborted) continue;
    options.onState({ kind: "retrying", inMs: delay, reason });
    await sleep(delay, AbortSignal.any([signal, visit]));
    delay = Math.min(delay * 2, maxDelay);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
