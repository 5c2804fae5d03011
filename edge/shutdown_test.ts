import assert from "node:assert/strict";
import { EdgeShutdown } from "./shutdown.ts";

Deno.test("EdgeShutdown with nothing held: stop aborts stopping, then ending, at once", async () => {
  const shutdown = new EdgeShutdown();
  const seen: string[] = [];
  shutdown.stopping.addEventListener("abort", () => seen.push("stopping"));
  shutdown.ending.addEventListener("abort", () => seen.push("ending"));
  const t0 = performance.now();
  await shutdown.stop(10_000);
  assert.ok(performance.now() - t0 < 1000);
  assert.deepEqual(seen, ["stopping", "ending"]);
  await shutdown.stop(10_000); // again: nothing aborted twice
  assert.deepEqual(seen, ["stopping", "ending"]);
});

Deno.test("EdgeShutdown waits for what is held, released once however often it is called", async () => {
  const shutdown = new EdgeShutdown();
  const first = shutdown.hold();
  const second = shutdown.hold();
  let stopped = false;
  const stopping = shutdown.stop(10_000).then(() => stopped = true);
  assert.equal(shutdown.stopping.aborted, true);
  first();
  first(); // a second call must not count for `second`
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(stopped, false);
  assert.equal(shutdown.ending.aborted, false);
  // Asked again meanwhile: the same stop, ending with the release.
  let again = false;
  const stoppingAgain = shutdown.stop(10_000).then(() => again = true);
  const released = performance.now();
  second();
  await stopping;
  await stoppingAgain;
  assert.ok(again);
  assert.ok(performance.now() - released < 1000, "waited out the grace");
  assert.equal(shutdown.ending.aborted, true);
});

Deno.test("EdgeShutdown ends what is still held once the grace has passed", async () => {
  const shutdown = new EdgeShutdown();
  const release = shutdown.hold();
  let endedAt = 0;
  shutdown.ending.addEventListener("abort", () => endedAt = performance.now());
  const t0 = performance.now();
  await shutdown.stop(200);
  assert.ok(endedAt - t0 >= 190, `ended after ${endedAt - t0} ms`);
  release();
});
