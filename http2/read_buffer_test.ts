import assert from "node:assert/strict";
import { ReadBuffer } from "./read_buffer.ts";

Deno.test("ReadBuffer.space() keeps unparsed bytes, compacting then growing", () => {
  const rb = new ReadBuffer(16, 8);
  rb.space().set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  rb.filled(10);
  rb.consumed(6); // 4 unparsed: 7..10
  // 6 bytes of room left < 8: compacts to the front.
  const room = rb.space();
  assert.equal(room.byteLength, 12);
  assert.deepEqual([...rb.buf.subarray(rb.start, rb.end)], [7, 8, 9, 10]);
  room.set([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  rb.filled(10); // 14 unparsed, 2 bytes of room: grows
  assert.equal(rb.space().byteLength, 32 - 14);
  assert.deepEqual(
    [...rb.buf.subarray(rb.start, rb.end)],
    [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
  );
  rb.consumed(rb.end);
  assert.equal(rb.start, 0);
  assert.equal(rb.end, 0);
});
