import assert from "node:assert/strict";
import { Fifo } from "./fifo.ts";

Deno.test("Fifo keeps order across compaction and drain()", () => {
  const q = new Fifo<number>();
  for (let i = 0; i < 5000; i++) q.push(i);
  for (let i = 0; i < 3000; i++) assert.equal(q.shift(), i);
  assert.equal(q.length, 2000);
  assert.equal(q.peek(), 3000);
  q.push(5000);
  const rest = q.drain();
  assert.equal(rest.length, 2001);
  assert.equal(rest[0], 3000);
  assert.equal(rest.at(-1), 5000);
  assert.equal(q.length, 0);
  assert.equal(q.shift(), undefined);
  q.push(7);
  assert.equal(q.shift(), 7);
  assert.equal(q.length, 0);
});
