import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { MessageType } from "../gen/chat_pb.ts";
import { rejection, rest, startCore, take } from "./support/core.ts";

Deno.test("SendMessage returns msg_N ids with a server timestamp", async () => {
  await using f = await startCore();
  const before = Date.now();
  const a = await f.client.sendMessage({
    user: "ann",
    content: "hi",
    room: "r",
  });
  const b = await f.client.sendMessage({
    user: "ann",
    content: "again",
    room: "r",
  });
  assert.equal(a.messageId, "msg_1");
  assert.equal(b.messageId, "msg_2");
  const ms = Number(a.timestamp!.seconds) * 1000 + a.timestamp!.nanos / 1e6;
  assert.ok(
    ms >= before - 1000 && ms <= Date.now() + 1000,
    `timestamp ${ms} is now`,
  );
});

Deno.test("SubscribeMessages sends the welcome, then the room's messages only", async () => {
  await using f = await startCore();
  const sub = f.client.subscribeMessages({ room: "general", user: "Alice" });
  const [welcome] = await take(sub, 1);
  assert.equal(welcome.id, "system");
  assert.equal(welcome.user, "System");
  assert.equal(welcome.content, "Welcome to room general, Alice!");
  assert.equal(welcome.room, "general");
  assert.equal(welcome.type, MessageType.SYSTEM);
  assert.ok(welcome.timestamp);

  await f.client.sendMessage({
    user: "Bob",
    content: "elsewhere",
    room: "other",
  });
  const sent = await f.client.sendMessage({
    user: "Bob",
    content: "hello",
    room: "general",
  });
  const [msg] = await take(sub, 1);
  assert.equal(msg.id, sent.messageId);
  assert.equal(msg.user, "Bob");
  assert.equal(msg.content, "hello");
  assert.equal(msg.room, "general");
  assert.equal(msg.type, MessageType.CHAT);
  assert.deepEqual(msg.timestamp, sent.timestamp);
  sub.cancel();
});

Deno.test("SubscribeMessages delivers one broadcast to every subscriber of the room", async () => {
  await using f = await startCore();
  const subs = Array.from(
    { length: 5 },
    (_, i) => f.newClient().subscribeMessages({ room: "fan", user: `u${i}` }),
  );
  await Promise.all(subs.map((s) => take(s, 1)));
  for (let i = 0; i < 20; i++) {
    await f.client.sendMessage({ user: "p", content: `m${i}`, room: "fan" });
  }
  for (const s of subs) {
    const got = await take(s, 20);
    assert.deepEqual(
      got.map((m) => m.content),
      Array.from({ length: 20 }, (_, i) => `m${i}`),
    );
    s.cancel();
  }
});

Deno.test("UploadMessages counts, broadcasts in order and answers at the end", async () => {
  await using f = await startCore();
  const sub = f.client.subscribeMessages({ room: "general", user: "watcher" });
  await take(sub, 1);
  const response = new Promise<{ messageCount: number; success: boolean }>(
    (resolve, reject) => {
      const up = f.client.uploadMessages((err, res) =>
        err ? reject(err) : resolve(res!)
      );
      for (let i = 0; i < 5; i++) {
        up.write({
          id: `batch_${i}`,
          user: "Bob",
          content: `Batch ${i}`,
          room: "general",
          type: MessageType.CHAT,
        });
      }
      up.end();
    },
  );
  const res = await response;
  assert.equal(res.messageCount, 5);
  assert.equal(res.success, true);
  const got = await take(sub, 5);
  assert.deepEqual(
    got.map((m) => [m.id, m.user, m.content]),
    [0, 1, 2, 3, 4].map((i) => [`batch_${i}`, "Bob", `Batch ${i}`]),
  );
  sub.cancel();
});

Deno.test("UploadMessages of zero messages answers a count of 0", async () => {
  await using f = await startCore();
  const res = await new Promise<{ messageCount: number; success: boolean }>(
    (resolve, reject) => {
      f.client.uploadMessages((err, r) => err ? reject(err) : resolve(r!))
        .end();
    },
  );
  assert.equal(res.messageCount, 0);
  assert.equal(res.success, true);
});

Deno.test("UploadMessages ends with INVALID_ARGUMENT naming the bad message", async () => {
  await using f = await startCore();
  const err = await rejection(
    new Promise((resolve, reject) => {
      const up = f.client.uploadMessages((e, r) => e ? reject(e) : resolve(r));
      up.write({ user: "Bob", content: "ok", room: "general" });
      up.write({ user: "Bob", content: "ok", room: "general" });
      up.write({ user: "Bob", content: "no room" });
      up.end();
    }),
  );
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.match(err.details, /message 3: room is required/);
});

Deno.test("UploadMessages validates every message, also after valid ones from the same user and room", async () => {
  await using f = await startCore();
  const upload = (posts: Record<string, string>[]) =>
    rejection(
      new Promise((resolve, reject) => {
        const up = f.client.uploadMessages((e, r) =>
          e ? reject(e) : resolve(r)
        );
        for (const p of posts) up.write(p);
        up.end();
      }),
    );
  const ok = { user: "Bob", content: "ok", room: "general" };
  const cases: [Record<string, string>, RegExp][] = [
    [{ user: "Bob", content: "", room: "general" }, /content is required/],
    [
      { user: "Bob", content: " \n\t ", room: "general" },
      /content is required/,
    ],
    [{ user: " ", content: "x", room: "general" }, /user is required/],
    [{ user: "Bob", content: "x", room: "r".repeat(257) }, /room is longer/],
  ];
  for (const [bad, why] of cases) {
    const err = await upload([ok, ok, bad, ok]);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /^message 3: /);
    assert.match(err.details, why);
  }
});

Deno.test("Chat echoes each message and broadcasts the original to its room", async () => {
  await using f = await startCore();
  const sub = f.newClient().subscribeMessages({
    room: "general",
    user: "watcher",
  });
  await take(sub, 1);
  const chat = f.client.chat();
  chat.write({
    id: "client_1",
    user: "Charlie",
    content: "Bidirectional message #1",
    room: "general",
  });
  const [echo] = await take(chat, 1);
  assert.equal(echo.id, "echo_client_1");
  assert.equal(echo.user, "Server");
  assert.equal(echo.content, "Echo: Bidirectional message #1");
  assert.equal(echo.room, "general");
  assert.equal(echo.type, MessageType.SYSTEM);
  assert.ok(echo.timestamp);
  const [original] = await take(sub, 1);
  assert.equal(original.id, "client_1");
  assert.equal(original.user, "Charlie");
  assert.equal(original.content, "Bidirectional message #1");

  chat.end();
  // The server ends with OK once the client half-closes.
  assert.deepEqual(await rest(chat), []);
  sub.cancel();
});

Deno.test("Chat sends 'Server is alive!' every aliveIntervalMs", async () => {
  await using f = await startCore({ aliveIntervalMs: 50 });
  const chat = f.client.chat();
  const got = await take(chat, 2);
  for (const m of got) {
    assert.equal(m.content, "Server is alive!");
    assert.equal(m.user, "Server");
    assert.equal(m.type, MessageType.SYSTEM);
    assert.match(m.id, /^server_\d+$/);
  }
  chat.cancel();
});

for (const content of ["", "   ", " \n\t "]) {
  Deno.test(`Chat ends with INVALID_ARGUMENT for a message with content ${JSON.stringify(content)}`, async () => {
    await using f = await startCore();
    const chat = f.client.chat();
    chat.write({ id: "x", user: "Charlie", content, room: "general" });
    const err = await rejection(rest(chat));
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /content is required/);
  });
}
