/**
 * The wall clock read once per event-loop turn.
 *
 * Every publish stamps its message with the time it was stored (for the
 * history's TTL). An upload publishes a whole socket read's messages (often
 * hundreds) in one synchronous run, and `Date.now()` costs ~55 ns a call on
 * Deno 2.9.6, about 5% of an uploaded message's CPU. A TTL counted in hours
 * does not need the time of each message within one run; the first read of
 * a turn is kept until the turn's microtasks run.
 *
 * @example
 * ```ts
 * const a = turnNow();
 * const b = turnNow(); // the same value, with no clock read
 * ```
 *
 * @module
 */

let now = -1;
const forget = () => {
  now = -1;
};

/** `Date.now()` as first read in this event-loop turn. */
export function turnNow(): number {
  if (now < 0) {
    now = Date.now();
    queueMicrotask(forget);
  }
  return now;
}
