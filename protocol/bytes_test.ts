import assert from "node:assert/strict";
import { concatBytes } from "./bytes.ts";

Deno.test("concatBytes() joins views by their own bytes, not their buffers", () => {
  const backing = new Uint8Array([9, 1, 2, 3, 9]);
  const joined = concatBytes([
    backing.subarray(1, 4),
    new Uint8Array(0),
    new Uint8Array([4, 5]),
  ]);
  assert.deepEqual([...joined], [1, 2, 3, 4, 5]);
  assert.equal(joined.buffer.byteLength, 5);
  assert.equal(concatBytes([]).byteLength, 0);
});
