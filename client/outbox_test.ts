import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { Outbox, UNCONFIRMED_TRIES } from "./outbox.ts";

function outbox(
  send: (content: string, key: string) => Promise<void>,
  canSend = () => true,
) {
  const lines: string[] = [];
  const box = new Outbox({
    send,
    canSend,
    minRetryMs: 10,
    maxRetryMs: 40,
    warn: (t) => lines.push(`warn ${t}`),
    note: (t) => lines.push(`note ${t}`),
    changed: () => {},
  });
  return { box, lines };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(check());
};

Deno.test("Outbox retries an UNAVAILABLE line in order, says so once, then says it was sent", async () => {
  let fails = 2;
  const sent: string[] = [];
  const { box, lines } = outbox((content) => {
    if (content === "a" && fails-- > 0) {
      return Promise.reject({ code: status.UNAVAILABLE, details: "down" });
    }
    sent.push(content);
    return Promise.resolve();
  });
  box.push("a");
  box.push("b");
  await until(() => box.idle);
  assert.deepEqual(sent, ["a", "b"]);
  assert.deepEqual(lines, [
    'warn not sent yet: "a" (UNAVAILABLE: down); will retry',
    'note -- sent: "a"',
  ]);
  assert.deepEqual(box.close(), []);
});

Deno.test("Outbox drops a refused line with its reason and keeps going", async () => {
  const { box, lines } = outbox((content) =>
    content === "bad"
      ? Promise.reject({ code: status.PERMISSION_DENIED, details: "not you" })
      : Promise.resolve()
  );
  box.push("bad");
  box.push("good");
  await until(() => box.idle);
  assert.equal(box.refused, 1);
  assert.deepEqual(lines, [
    'warn not sent: "bad" (PERMISSION_DENIED: not you)',
  ]);
});

Deno.test("Outbox sends a line cut off with INTERNAL again with the same key; given up after a few tries, it is not confirmed, may have been stored", async () => {
  const tries = new Map<string, string[]>();
  let cuts = 2;
  const { box, lines } = outbox((content, key) => {
    tries.set(content, [...(tries.get(content) ?? []), key]);
    if (content === "cut" && cuts-- > 0) {
      return Promise.reject({ code: status.INTERNAL, details: "write EPIPE" });
    }
    if (content === "broken") {
      return Promise.reject({ code: status.UNKNOWN, details: "bug" });
    }
    return Promise.resolve();
  });
  box.push("cut");
  box.push("broken");
  box.push("next");
  await until(() => box.idle);
  // The same key for every try of a line, another for each line.
  assert.equal(tries.get("cut")!.length, 3);
  assert.equal(new Set(tries.get("cut")).size, 1);
  assert.equal(tries.get("broken")!.length, UNCONFIRMED_TRIES);
  assert.equal(new Set(tries.get("broken")).size, 1);
  assert.notEqual(tries.get("cut")![0], tries.get("next")![0]);
  assert.equal(box.refused, 1);
  assert.deepEqual(lines, [
    'warn not confirmed yet: "cut" (INTERNAL: write EPIPE); will retry (it shows once if it was stored)',
    'note -- sent: "cut"',
    'warn not confirmed yet: "broken" (UNKNOWN: bug); will retry (it shows once if it was stored)',
    'warn not confirmed: "broken" (UNKNOWN: bug); it may have been stored: the room\'s history shows it if so',
  ]);
});

Deno.test("Outbox.close() hands back what never went out while disconnected", async () => {
  let calls = 0;
  const { box, lines } = outbox(
    () => (calls++, Promise.resolve()),
    () => false,
  );
  box.push("one");
  box.push("two");
  await until(() => lines.length === 1);
  assert.deepEqual(box.close(), ["one", "two"]);
  assert.equal(calls, 0);
  assert.match(
    lines[0],
    /^warn not sent yet: "one" \(UNAVAILABLE: disconnected\)/,
  );
});
