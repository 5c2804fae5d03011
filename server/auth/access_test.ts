import assert from "node:assert/strict";
import { ChatError } from "../rooms/errors.ts";
import { Access } from "./access.ts";
import { RateLimiter } from "./rate_limiter.ts";

Deno.test("Access.allowPost() refills the rate limit by a monotonic clock, not the wall clock", async () => {
  let wall = Date.now();
  const access = new Access({
    rateLimit: new RateLimiter({ ratePerSecond: 100, burst: 1 }),
    now: () => wall,
  });
  const caller = access.caller(undefined, () => "peer");
  assert.ok(!(caller instanceof Promise));
  access.allowPost(caller, "lobby");
  assert.throws(
    () => access.allowPost(caller, "lobby"),
    (err) => ChatError.is(err) && err.code === "resource_exhausted",
  );
  // The wall clock steps back an hour; 30 ms later a token has refilled.
  wall -= 3_600_000;
  await new Promise((r) => setTimeout(r, 30));
  access.allowPost(caller, "lobby");
});
