import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { mayPass, retryUntilSent } from "./send_retry.ts";

const FAST = { firstMs: 5, maxMs: 20, tries: 4 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("mayPass: an outage or a deadline may pass, a refusal does not", () => {
  for (const code of [Code.Unavailable, Code.DeadlineExceeded, Code.Internal]) {
    assert.ok(mayPass(new ConnectError("x", code)), Code[code]);
  }
  for (
    const code of [
      Code.PermissionDenied,
      Code.InvalidArgument,
      Code.Unauthenticated,
      Code.ResourceExhausted,
    ]
  ) {
    assert.ok(!mayPass(new ConnectError("x", code)), Code[code]);
  }
});

Deno.test("retryUntilSent: tries until sent, then stops", async () => {
  let tries = 0;
  retryUntilSent(() => Promise.resolve(++tries === 3), () => true, FAST);
  await sleep(200);
  assert.equal(tries, 3);
});

Deno.test("retryUntilSent: stops when told, and after its tries", async () => {
  let tries = 0;
  let going = true;
  retryUntilSent(
    () => {
      tries++;
      going = false;
      return Promise.resolve(false);
    },
    () => going,
    FAST,
  );
  let spent = 0;
  retryUntilSent(() => (spent++, Promise.resolve(false)), () => true, FAST);
  await sleep(300);
  assert.equal(tries, 1);
  assert.equal(spent, FAST.tries);
});
