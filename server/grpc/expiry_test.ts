import assert from "node:assert/strict";
import { ChatError } from "../rooms/errors.ts";
import { ExpirySweep, GRAIN_MS } from "./expiry.ts";

/** A stream that records when and how it was finished. */
function stream(name: string, log: string[]) {
  return {
    finish(err: unknown) {
      log.push(`${name}: ${(err as ChatError).code} ${(err as Error).message}`);
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("ExpirySweep ends streams in expiry order with UNAUTHENTICATED, one grain late at most", async () => {
  const sweep = new ExpirySweep();
  const log: string[] = [];
  const started = Date.now();
  sweep.add(stream("late", log), 2 * GRAIN_MS);
  sweep.add(stream("now", log), 0);
  sweep.add(stream("soon", log), 10);
  assert.equal(sweep.size, 3);
  await sleep(GRAIN_MS + 50);
  assert.deepEqual(log, [
    "now: unauthenticated token expired",
    "soon: unauthenticated token expired",
  ]);
  await sleep(2 * GRAIN_MS);
  assert.equal(log.length, 3);
  assert.equal(log[2], "late: unauthenticated token expired");
  assert.ok(Date.now() - started < 4 * GRAIN_MS + 200);
  // Nothing left: no timer stays armed (the test's sanitizer checks it).
  assert.equal(sweep.size, 0);
});

Deno.test("ExpirySweep: a stream that ended first is disposed and never finished; the timer stops with the last", async () => {
  const sweep = new ExpirySweep();
  const log: string[] = [];
  const a = sweep.add(stream("a", log), 50);
  const b = sweep.add(stream("b", log), 50);
  a[Symbol.dispose]();
  a[Symbol.dispose]();
  assert.equal(sweep.size, 1);
  b[Symbol.dispose]();
  assert.equal(sweep.size, 0);
  await sleep(GRAIN_MS + 50);
  assert.deepEqual(log, []);
});

Deno.test("ExpirySweep keeps a stream whose token expires past setTimeout's range until its time", async () => {
  let now = 1_000_000;
  const sweep = new ExpirySweep(() => now);
  const log: string[] = [];
  const far = sweep.add(stream("far", log), 40 * 24 * 3600 * 1000);
  const near = sweep.add(stream("near", log), 10);
  now += 2 * GRAIN_MS;
  await sleep(GRAIN_MS + 50);
  assert.deepEqual(log, ["near: unauthenticated token expired"]);
  assert.equal(sweep.size, 1);
  near[Symbol.dispose]();
  far[Symbol.dispose]();
  assert.equal(sweep.size, 0);
});
