import assert from "node:assert/strict";
import { turnNow } from "./turn_clock.ts";

Deno.test("turnNow() reads the clock once per turn and again in the next one", async () => {
  const first = turnNow();
  const before = Date.now();
  while (Date.now() === before) {
    // Let the wall clock move on within this turn.
  }
  assert.equal(turnNow(), first, "the same value within the turn");
  await new Promise((resolve) => setTimeout(resolve, 2));
  const next = turnNow();
  assert.ok(next > first, `${next} after ${first}`);
  assert.ok(Math.abs(next - Date.now()) <= 1, "read anew in the next turn");
});
