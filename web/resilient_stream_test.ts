import assert from "node:assert/strict";
import { PageGate } from "./page_gate.ts";
import { keepStreaming, type StreamState } from "./resilient_stream.ts";

/** A stream of 1, 2, 3, … that stays open until `signal` aborts, then throws. */
async function* counting(signal: AbortSignal): AsyncGenerator<number> {
  for (let n = 1;; n++) {
    yield n;
    await new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const timer = setTimeout(resolve, 5);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });
  }
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  assert.ok(check(), "condition not reached in time");
};

Deno.test("keepStreaming() with a gate: the stream ends when the page is hidden, waits, and reopens at once when shown", async () => {
  const gate = new PageGate();
  const life = new AbortController();
  const states: StreamState["kind"][] = [];
  const opened: AbortSignal[] = [];
  let received = 0;
  const done = keepStreaming({
    signal: life.signal,
    gate,
    // Every error is fatal here: ending for the hidden page must not count.
    fatal: () => true,
    // A retry would wait a minute: reopening must not back off.
    minDelayMs: 60_000,
    open: (signal) => {
      opened.push(signal);
      return counting(signal);
    },
    onMessage: () => void received++,
    onState: (state) => states.push(state.kind),
  });
  await until(() => received > 0);
  gate.close();
  await until(() => states.at(-1) === "paused");
  assert.equal(opened.length, 1);
  assert.ok(opened[0].aborted, "the first stream was ended");
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(opened.length, 1, "nothing opens while hidden");

  gate.reopen();
  const before = received;
  await until(() => received > before);
  assert.equal(opened.length, 2);
  assert.ok(!opened[1].aborted);
  assert.deepEqual(states, [
    "connecting",
    "live",
    "paused",
    "connecting",
    "live",
  ]);

  life.abort();
  await done;
  assert.ok(opened[1].aborted);
});

Deno.test("keepStreaming() with a closed gate returns when its signal aborts, opening nothing", async () => {
  const gate = new PageGate();
  gate.close();
  const life = new AbortController();
  let opened = 0;
  const done = keepStreaming({
    signal: life.signal,
    gate,
    open: (signal) => {
      opened++;
      return counting(signal);
    },
    onMessage: () => {},
    onState: () => {},
  });
  await new Promise((resolve) => setTimeout(resolve, 10));
  life.abort();
  await done;
  assert.equal(opened, 0);
  // A later reopen wakes nobody.
  gate.reopen();
  assert.equal(opened, 0);
});

Deno.test("PageGate: a new visit signal per showing; close and reopen are idempotent", () => {
  const gate = new PageGate();
  const first = gate.visit;
  gate.close();
  gate.close();
  assert.ok(first.aborted);
  assert.equal(gate.open, false);
  gate.reopen();
  const second = gate.visit;
  gate.reopen();
  assert.equal(gate.visit, second);
  assert.ok(!second.aborted);
  assert.notEqual(first, second);
});
