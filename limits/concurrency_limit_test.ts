import assert from "node:assert/strict";
import { ConcurrencyLimit } from "./concurrency_limit.ts";

Deno.test("ConcurrencyLimit.acquire() refuses past max; a release frees one slot, once", () => {
  const limit = new ConcurrencyLimit(2);
  const a = limit.acquire("u")!;
  const b = limit.acquire("u")!;
  assert.equal(limit.acquire("u"), undefined);
  assert.ok(limit.acquire("v"));
  a();
  a();
  assert.equal(limit.count("u"), 1);
  const c = limit.acquire("u");
  assert.ok(c);
  assert.equal(limit.acquire("u"), undefined);
  b();
  c!();
  assert.equal(limit.count("u"), 0);
});
