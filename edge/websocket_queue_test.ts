import assert from "node:assert/strict";
import { RequestQueue } from "./websocket_queue.ts";

Deno.test("RequestQueue.push() refuses past its byte bound and delivers in order after close", async () => {
  const queue = new RequestQueue(10);
  assert.equal(queue.push(new Uint8Array(6)), true);
  assert.equal(queue.push(new Uint8Array(6)), false);
  assert.equal(queue.push(new Uint8Array(4)), true);
  queue.close();
  assert.equal(queue.push(new Uint8Array(1)), false);
  const sizes = [];
  for await (const item of queue) sizes.push(item.byteLength);
  assert.deepEqual(sizes, [6, 4]);
});
