import assert from "node:assert/strict";
import { ConcurrencyLimit } from "./concurrency_limit.ts";
import { RateLimiter } from "./rate_limiter.ts";

Deno.test("RateLimiter.take() allows a burst, then one per 1/rate, with the wait in ms", () => {
  const limiter = new RateLimiter({ ratePerSecond: 10, burst: 3 });
  for (let i = 0; i < 3; i++) assert.equal(limiter.take("a", 1000), 0);
  assert.equal(limiter.take("a", 1000), 100);
  assert.equal(limiter.take("a", 1050), 50);
  assert.equal(limiter.take("a", 1100), 0);
  assert.equal(limiter.take("a", 1100), 100);
  // Another key has its own bucket.
  assert.equal(limiter.take("b", 1100), 0);
  // A long quiet spell refills to the burst, not beyond.
  for (let i = 0; i < 3; i++) assert.equal(limiter.take("a", 60_000), 0);
  assert.ok(limiter.take("a", 60_000) > 0);
});

Deno.test("RateLimiter drops refilled buckets when the map grows", () => {
  const limiter = new RateLimiter({ ratePerSecond: 1, burst: 1 });
  for (let i = 0; i < 1024; i++) limiter.take(`k${i}`, 0);
  assert.equal(limiter.size, 1024);
  // Two seconds later every bucket is full again: the sweep drops them.
  limiter.take("new", 2000);
  assert.equal(limiter.size, 1);
  // Buckets still owed tokens survive a sweep.
  const busy = new RateLimiter({ ratePerSecond: 1, burst: 1 });
  for (let i = 0; i < 1024; i++) busy.take(`k${i}`, 0);
  busy.take("new", 10);
  assert.equal(busy.size, 1025);
  assert.ok(busy.take("k0", 10) > 0);
});

Deno.test("RateLimiter refuses a zero rate or burst", () => {
  assert.throws(() => new RateLimiter({ ratePerSecond: 0, burst: 1 }));
  assert.throws(() => new RateLimiter({ ratePerSecond: 1, burst: 0 }));
});

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
