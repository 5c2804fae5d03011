/**
 * Keeps a server stream open: reopens it with backoff whenever it ends or fails.
 *
 * A room subscription or metrics feed is meant to last as long as the page; a
 * restarted core, an edge deploy or a dropped connection ends the stream, and
 * the page should come back by itself and tell the user what it is doing.
 *
 * @module
 */

/** What the stream is doing now, for the status line. */
export type StreamState =
  | { kind: "connecting"; attempt: number }
  | { kind: "live" }
  | { kind: "retrying"; inMs: number; reason: string }
  /** Ended for good: `fatal` said no retry can help. */
  | { kind: "failed"; reason: string };

/** Options: how to open the stream and what to do with what it says. */
export interface ResilientOptions<T> {
  open(signal: AbortSignal): AsyncIterable<T>;
  /** Returning "reopen" ends this stream and opens the next one at once. */
  onMessage(message: T): void | "reopen";
  onState(state: StreamState): void;
  signal: AbortSignal;
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
  const { signal } = options;
  const minDelay = options.minDelayMs ?? 500;
  const maxDelay = options.maxDelayMs ?? 5000;
  let delay = minDelay;
  let attempt = 0;
  while (!signal.aborted) {
    attempt++;
    options.onState({ kind: "connecting", attempt });
    let reason = "stream ended";
    const thisStream = new AbortController();
    try {
      let first = true;
      const stream = options.open(AbortSignal.any([signal, thisStream.signal]));
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
      if (!signal.aborted && options.fatal?.(err)) {
        return options.onState({ kind: "failed", reason });
      }
    }
    if (signal.aborted) return;
    options.onState({ kind: "retrying", inMs: delay, reason });
    await sleep(delay, signal);
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
