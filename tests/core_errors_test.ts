import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Client, credentials, Metadata, status } from "@grpc/grpc-js";
import { deadlineIn } from "../client/rpc.ts";
import {
  eventually,
  rejection,
  rest,
  startCore,
  streamError,
  take,
} from "./support/core.ts";

Deno.test("SendMessage rejects a missing or blank user, room or content with INVALID_ARGUMENT", async () => {
  await using f = await startCore();
  const cases = [
    [{ content: "c", room: "r" }, /user is required/],
    [{ user: "u", content: "c" }, /room is required/],
    [{ user: "u", room: "r" }, /content is required/],
    [{ user: "   ", content: "c", room: "r" }, /user is required/],
    [{ user: "u", content: "   ", room: "r" }, /content is required/],
    [{ user: "u", content: " \n\t ", room: "r" }, /content is required/],
    [{ user: "u", content: "c", room: " \t" }, /room is required/],
    [
      { user: "u".repeat(300), content: "c", room: "r" },
      /user is longer than 256/,
    ],
  ] as const;
  for (const [req, message] of cases) {
    const err = await rejection(f.client.sendMessage(req));
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, message);
  }
});

Deno.test("SubscribeMessages without a room or user ends with INVALID_ARGUMENT", async () => {
  await using f = await startCore();
  const noRoom = await streamError(f.client.subscribeMessages({ user: "u" }));
  assert.equal(noRoom.code, status.INVALID_ARGUMENT);
  assert.match(noRoom.details, /room is required/);
  const noUser = await streamError(f.client.subscribeMessages({ room: "r" }));
  assert.equal(noUser.code, status.INVALID_ARGUMENT);
  assert.match(noUser.details, /user is required/);
  assert.equal(f.core.snapshot().subscribers, 0);
});

Deno.test("StreamMetrics rejects a negative interval with INVALID_ARGUMENT", async () => {
  await using f = await startCore();
  const err = await streamError(
    f.client.streamMetrics({ instanceId: "x", intervalSeconds: -1 }),
  );
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.match(err.details, /interval_seconds/);
});

Deno.test("a request over maxMessageBytes fails with RESOURCE_EXHAUSTED, others go on", async () => {
  await using f = await startCore({ maxMessageBytes: 64 * 1024 });
  const err = await rejection(
    f.client.sendMessage({
      user: "u",
      room: "r",
      content: "x".repeat(70 * 1024),
    }),
  );
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  const ok = await f.client.sendMessage({
    user: "u",
    room: "r",
    content: "x".repeat(60 * 1024),
  });
  assert.match(ok.messageId, /^msg_\d+$/);
});

Deno.test("a message just under maxMessageBytes reaches subscribers whole", async () => {
  await using f = await startCore({ maxMessageBytes: 64 * 1024 });
  const sub = f.client.subscribeMessages({ room: "r", user: "w" });
  await take(sub, 1);
  await f.client.sendMessage({
    user: "u",
    room: "r",
    content: "y".repeat(63 * 1024),
  });
  const [big] = await take(sub, 1);
  assert.equal(big.content.length, 63 * 1024);
  sub.cancel();
});

Deno.test("an unknown method answers UNIMPLEMENTED", async () => {
  await using f = await startCore();
  const raw = new Client(f.addr, credentials.createInsecure());
  try {
    const err = await rejection(
      new Promise((resolve, reject) => {
        raw.makeUnaryRequest(
          "/chat.ChatService/NoSuchMethod",
          (x: Uint8Array) => Buffer.from(x),
          (b: Buffer) => b,
          new Uint8Array(),
          new Metadata(),
          (e, r) => e ? reject(e) : resolve(r),
        );
      }),
    );
    assert.equal(err.code, status.UNIMPLEMENTED);
  } finally {
    raw.close();
  }
});

Deno.test("maxConcurrentStreams bounds the streams of one connection", async () => {
  await using f = await startCore({ maxConcurrentStreams: 2 });
  const a = f.client.subscribeMessages({ room: "r", user: "a" });
  const b = f.client.subscribeMessages({ room: "r", user: "b" });
  await Promise.all([take(a, 1), take(b, 1)]);
  // A third stream on the same connection waits for a free slot.
  const blocked = await rejection(
    f.client.sendMessage({ user: "u", room: "r", content: "c" }, {
      deadline: deadlineIn(300),
    }),
  );
  assert.equal(blocked.code, status.DEADLINE_EXCEEDED);
  // Another connection is not affected.
  const other = await f.newClient().sendMessage({
    user: "u",
    room: "r",
    content: "c",
  });
  assert.match(other.messageId, /^msg_/);
  a.cancel();
  const after = await f.client.sendMessage({
    user: "u",
    room: "r",
    content: "c",
  }, { deadline: deadlineIn(3000) });
  assert.match(after.messageId, /^msg_/);
  b.cancel();
});

Deno.test("a deadline ends a subscription with DEADLINE_EXCEEDED and removes it", async () => {
  await using f = await startCore();
  const sub = f.client.subscribeMessages({ room: "r", user: "a" }, {
    deadline: deadlineIn(200),
  });
  await take(sub, 1);
  assert.equal(f.core.snapshot().subscribers, 1);
  const err = await rejection(rest(sub));
  assert.equal(err.code, status.DEADLINE_EXCEEDED);
  await eventually(
    () => f.core.snapshot().subscribers === 0,
    "the server dropped the subscriber",
  );
  assert.equal(f.core.snapshot().activeStreams, 0);
});
