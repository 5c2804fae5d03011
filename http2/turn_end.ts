/**
 * One flush point per event-loop turn, shared by stream and socket batching.
 *
 * Writes are collected during a turn and flushed once at its end, in two
 * steps that must stay ordered: first every call's pending messages go to
 * its HTTP/2 stream (`beforeTurnEnds`), then, after Deno's http2 has pumped
 * the resulting frames into the (corked) sockets on `process.nextTick`, every
 * socket is uncorked (`atTurnEnd`), so a whole turn leaves as one `writev`
 * per connection. Both run from a single `setImmediate`, i.e. after the I/O
 * callbacks of the turn and before the next poll.
 */
import process from "node:process";

let flushes: (() => void)[] = [];
let finals: (() => void)[] = [];
let scheduled = false;
// From the turn-end flushes until the finals ran: what is queued then still
// leaves in this turn, no new `setImmediate` is needed.
let ending = false;

/** Runs `fn` at the end of this turn, before the sockets are uncorked. */
export function beforeTurnEnds(fn: () => void): void {
  flushes.push(fn);
  schedule();
}

/** Runs `fn` at the very end of this turn, after the stream flushes. */
export function atTurnEnd(fn: () => void): void {
  finals.push(fn);
  schedule();
}

function schedule(): void {
  if (scheduled || ending) return;
  scheduled = true;
  setImmediate(endTurn);
}

function endTurn(): void {
  scheduled = false;
  ending = true;
  // A flush may queue more (a commit delivers to subscribers, whose
  // streams flush): they run now too, so the turn leaves in one write.
  while (flushes.length > 0) {
    const now = flushes;
    flushes = [];
    runAll(now);
  }
  // The streams' frames reach the sockets in nextTicks queued just now;
  // this one is queued after them.
  process.nextTick(runFinals);
}

function runFinals(): void {
  ending = false;
  const now = finals;
  finals = [];
  runAll(now);
  // Queued by a nextTick after the flushes, or by a final: the next turn.
  if (flushes.length > 0 || finals.length > 0) schedule();
}

function runAll(fns: (() => void)[]): void {
  for (const fn of fns) {
    try {
      fn();
    } catch (err) {
      // One broken connection must not stop the others' flushes.
      console.error("turn-end flush failed", err);
    }
  }
}
