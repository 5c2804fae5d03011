import assert from "node:assert/strict";
import { LineRation } from "./line_ration.ts";

Deno.test("LineRation: perSecond lines a second, the rest summed up once when the second ends, or at close()", async () => {
  const sums: number[] = [];
  let now = 3_990; // 10 ms before the second ends
  const ration = new LineRation(3, (n) => sums.push(n), () => now);
  const taken = Array.from({ length: 10 }, () => ration.take());
  assert.deepEqual(taken, [true, true, true, ...Array(7).fill(false)]);
  assert.deepEqual(sums, []);
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(sums, [7], "summed up by the timer, no later line needed");
  // A new second: lines go out again; its summary comes with the next
  // second's first line, or at close().
  now = 5_000;
  assert.deepEqual([ration.take(), ration.take(), ration.take()], [
    true,
    true,
    true,
  ]);
  assert.equal(ration.take(), false);
  now = 6_000;
  assert.equal(ration.take(), true);
  assert.deepEqual(sums, [7, 1]);
  for (let i = 0; i < 4; i++) ration.take();
  ration.close();
  ration.close();
  assert.deepEqual(sums, [7, 1, 2]);
});
