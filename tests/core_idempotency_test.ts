/**
 * Idempotent SendMessage (server/rooms/idempotency.ts): a post sent again
 * with the same idempotency_key is answered with the first's id, timestamp
 * and offset and is neither stored nor delivered again, across a restart of
 * a durable store and across cores on one Redis. Real cores, grpc-js
 * clients.
 */
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ChatClient, MessageInit } from "../client/rpc.ts";
import {
  type Message,
  MessageType,
  type UploadResponse,
} from "../gen/chat_pb.ts";
import type { StartOptions } from "../server/server.ts";
import { startRedisServer } from "../tools/serve/redis.ts";
import { bearer, hs256, SECRET } from "./support/auth.ts";
import { rejection, startCore, take } from "./support/core.ts";
import { startCoreEdge } from "./fixtures/edge_stack.ts";
import { createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import { ChatService } from "../gen/chat_pb.ts";

/** The room's messages so far, by a subscriber asking for its history. */
async function history(client: ChatClient, room: string): Promise<Message[]> {
  const stream = client.subscribeMessages({
    room,
    user: "reader",
    history: 100,
  });
  const [welcome] = await take<Message>(stream, 1);
  const count = Number(welcome.offset);
  const messages = count === 0 ? [] : await take<Message>(stream, count);
  stream.cancel();
  return messages.filter((m) => m.type === MessageType.CHAT);
}

function post(
  client: ChatClient,
  content: string,
  key: string,
  user = "ann",
  room = "r",
) {
  return client.sendMessage({ user, room, content, idempotencyKey: key });
}

function upload(client: ChatClient, messages: MessageInit[]) {
  return new Promise<UploadResponse>((resolve, reject) => {
    const up = client.uploadMessages((e, r) => e ? reject(e) : resolve(r!));
    for (const m of messages) up.write(m);
    up.end();
  });
}

/** The idempotency metrics of the core `f`, and its messages published. */
async function keyMetrics(f: { core: { metricsPort: number | null } }) {
  const text = await (await fetch(
    `http://127.0.0.1:${f.core.metricsPort}/metrics`,
  )).text();
  const value = (name: string) =>
    Number(text.match(new RegExp(`^${name} (\\d+)$`, "m"))?.[1]);
  return {
    repeats: value("chat_idempotent_repeats_total"),
    keys: value("chat_idempotency_keys"),
    published: value("chat_messages_published_total"),
  };
}

async function withCore<T>(
  options: StartOptions,
  fn: (client: ChatClient) => Promise<T>,
): Promise<T> {
  await using f = await startCore(options);
  return await fn(f.client);
}

Deno.test("SendMessage: the same idempotency key again is answered as the first and posts nothing; another key or user posts", async () => {
  await using f = await startCore({ store: "memory", metricsPort: 0 });
  const live = f.client.subscribeMessages({ room: "r", user: "watcher" });
  await take<Message>(live, 1);
  const first = await post(f.client, "hello", "k-1");
  const again = await post(f.client, "hello", "k-1");
  assert.equal(again.messageId, first.messageId);
  assert.equal(again.offset, first.offset);
  assert.deepEqual(again.timestamp, first.timestamp);
  // The same key from another user, and another key: new messages.
  const bob = await post(f.client, "hello", "k-1", "bob");
  const other = await post(f.client, "hello", "k-2");
  assert.deepEqual([bob.offset, other.offset], [2n, 3n]);
  // Delivered once each, carrying its key.
  const got = await take<Message>(live, 3);
  assert.deepEqual(
    got.map((m) => [m.user, m.idempotencyKey, Number(m.offset)]),
    [["ann", "k-1", 1], ["bob", "k-1", 2], ["ann", "k-2", 3]],
  );
  assert.equal((await history(f.client, "r")).length, 3);
  live.cancel();
  const metrics = await keyMetrics(f);
  assert.equal(metrics.repeats, 1);
  assert.equal(metrics.keys, 3);
});

Deno.test("SendMessage: another user's post is never answered with a key of the first's, whatever the characters of the names and keys", async () => {
  await using f = await startCore({ store: "memory" });
  const ann = await post(f.client, "ann's", "x\ny", "ann");
  const other = await post(f.client, "other's", "y", "ann\nx");
  assert.notEqual(other.messageId, ann.messageId);
  assert.equal((await history(f.client, "r")).length, 2);
});

Deno.test("SendMessage: under a token, a key is the token's user's: another user's same key posts, a post refused as another user takes none", async () => {
  await using f = await startCore({ store: "memory", jwtSecret: SECRET });
  const ann = f.newClient(bearer(await hs256({ sub: "ann" })));
  const bob = f.newClient(bearer(await hs256({ sub: "bob" })));
  const send = (c: ChatClient, user: string) =>
    c.sendMessage({ user, room: "r", content: "x", idempotencyKey: "K" });
  const first = await send(ann, "");
  const refused = await rejection(send(bob, "ann"));
  assert.equal(refused.code, status.PERMISSION_DENIED);
  const bobs = await send(bob, "");
  assert.notEqual(bobs.messageId, first.messageId);
  // The user filled in from the token, or named: one key.
  assert.equal((await send(ann, "ann")).messageId, first.messageId);
  const reader = f.newClient(bearer(await hs256({ sub: "reader" })));
  assert.equal((await history(reader, "r")).length, 2);
});

Deno.test("SendMessage: repeats sent at once wait for the first and get its answer; a post without a key is never deduplicated", async () => {
  await using f = await startCore({
    store: "log",
    dataDir: await Deno.makeTempDir(),
  });
  const answers = await Promise.all(
    Array.from({ length: 20 }, () => post(f.client, "once", "k-same")),
  );
  assert.equal(new Set(answers.map((a) => a.messageId)).size, 1);
  const plain = await Promise.all([
    f.client.sendMessage({ user: "ann", room: "r", content: "twice" }),
    f.client.sendMessage({ user: "ann", room: "r", content: "twice" }),
  ]);
  assert.notEqual(plain[0].messageId, plain[1].messageId);
  assert.deepEqual(
    (await history(f.client, "r")).map((m) => m.content),
    ["once", "twice", "twice"],
  );
  await Deno.remove(f.core.config.dataDir, { recursive: true });
});

Deno.test("SendMessage: an idempotency key over 128 characters is INVALID_ARGUMENT", async () => {
  await using f = await startCore({ store: "memory" });
  const err = await rejection(post(f.client, "x", "k".repeat(129)));
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.match(err.details, /idempotency_key is longer than 128 characters/);
  assert.equal((await post(f.client, "x", "k".repeat(128))).offset, 1n);
});

Deno.test("SendMessage: a key too long is refused before the rate limit counts the call", async () => {
  await using f = await startCore({
    store: "memory",
    rateLimit: 1,
    rateBurst: 1,
  });
  const err = await rejection(post(f.client, "x", "k".repeat(129)));
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.equal((await post(f.client, "x", "k")).offset, 1n);
});

for (const store of ["log", "sqlite"] as const) {
  Deno.test(`[${store}] SendMessage: a post sent again after a restart with its key gets the stored message's answer`, async () => {
    const dataDir = await Deno.makeTempDir();
    try {
      const options = { store, dataDir };
      const first = await withCore(options, async (client) => {
        await post(client, "before", "k-0");
        return await post(client, "acknowledged, answer lost", "k-1");
      });
      await withCore(options, async (client) => {
        const again = await post(client, "acknowledged, answer lost", "k-1");
        assert.equal(again.messageId, first.messageId);
        assert.equal(again.offset, first.offset);
        assert.deepEqual(again.timestamp, first.timestamp);
        const next = await post(client, "after", "k-2");
        assert.equal(next.offset, first.offset + 1n);
        assert.deepEqual(
          (await history(client, "r")).map((m) => m.content),
          ["before", "acknowledged, answer lost", "after"],
        );
      });
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}

Deno.test("SendMessage: with --idempotency-window 0 keys are carried but not checked", async () => {
  await using f = await startCore({ store: "memory", idempotencyWindowMs: 0 });
  const a = await post(f.client, "x", "k");
  const b = await post(f.client, "x", "k");
  assert.notEqual(a.messageId, b.messageId);
});

Deno.test("SendMessage: keys are remembered for the window only", async () => {
  await using f = await startCore({
    store: "memory",
    idempotencyWindowMs: 300,
  });
  const a = await post(f.client, "x", "k");
  assert.equal((await post(f.client, "x", "k")).messageId, a.messageId);
  await new Promise((r) => setTimeout(r, 400));
  assert.notEqual((await post(f.client, "x", "k")).messageId, a.messageId);
});

Deno.test("SendMessage: a key posted after the room's earlier keys expired is still found by its repeat", async () => {
  await using f = await startCore({
    store: "memory",
    idempotencyWindowMs: 300,
  });
  await post(f.client, "before", "k-0");
  await new Promise((r) => setTimeout(r, 400));
  const first = await post(f.client, "after", "k-1");
  const again = await post(f.client, "after", "k-1");
  assert.equal(again.messageId, first.messageId);
  assert.deepEqual(
    (await history(f.client, "r")).map((m) => m.content),
    ["before", "after"],
  );
});

/** Messages of `user` to room `room`, each with its key ("" for none). */
const lines = (room: string, ...keyed: [string, string][]): MessageInit[] =>
  keyed.map(([content, idempotencyKey]) => ({
    user: "ann",
    room,
    content,
    idempotencyKey,
  }));

Deno.test("UploadMessages: an upload sent again whole is counted whole and stores again only its unkeyed messages; its keys are SendMessage's too", async () => {
  await using f = await startCore({ store: "memory", metricsPort: 0 });
  const live = f.client.subscribeMessages({ room: "u", user: "watcher" });
  await take<Message>(live, 1);
  const batch = lines("u", ["a", "k-1"], ["b", "k-2"], ["c", ""])
    .map((m, i) => ({ ...m, id: `telemetry ${i}` }));
  assert.equal((await upload(f.client, batch)).messageCount, 3);
  assert.equal((await upload(f.client, batch)).messageCount, 3);
  // Delivered once each (the unkeyed one twice), with its key.
  const got = await take<Message>(live, 4);
  assert.deepEqual(
    got.map((m) => [m.content, m.idempotencyKey, Number(m.offset)]),
    [["a", "k-1", 1], ["b", "k-2", 2], ["c", "", 3], ["c", "", 4]],
  );
  // A SendMessage with an uploaded key is its repeat, answered with the
  // uploaded message's id.
  const sent = await post(f.client, "a", "k-1", "ann", "u");
  assert.deepEqual([sent.offset, sent.messageId], [1n, "telemetry 0"]);
  // Another user's same key is a new message.
  const bob = lines("u", ["bob's", "k-1"]).map((m) => ({ ...m, user: "bob" }));
  assert.equal((await upload(f.client, bob)).messageCount, 1);
  assert.equal((await take<Message>(live, 1))[0].user, "bob");
  live.cancel();
  const metrics = await keyMetrics(f);
  assert.deepEqual([metrics.repeats, metrics.keys], [3, 3]);
});

Deno.test("UploadMessages: a key over 128 characters ends the upload INVALID_ARGUMENT naming the message; the ones before it are stored", async () => {
  await using f = await startCore({ store: "memory" });
  const err = await rejection(
    upload(f.client, lines("u", ["a", "k-1"], ["b", "k".repeat(129)])),
  );
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.match(err.details, /^message 2: idempotency_key is longer than 128/);
  assert.deepEqual(
    (await history(f.client, "u")).map((m) => m.content),
    ["a"],
  );
});

Deno.test("UploadMessages: an upload ended by a bad message while a keyed one waits for its room's keys still stores every message before the bad one", async () => {
  await using f = await startCore({ store: "memory" });
  // The first keyed post to "u" waits for its keys to be read; the
  // unkeyed message behind it waits with it when the bad one ends the call.
  const err = await rejection(
    upload(
      f.client,
      lines("u", ["a", "k-1"], ["plain", ""], ["b", "k".repeat(129)]),
    ),
  );
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.match(err.details, /^message 3: /);
  assert.deepEqual(
    (await history(f.client, "u")).map((m) => m.content),
    ["a", "plain"],
  );
});

Deno.test("Chat: a message sent again with its key is echoed again and stored and delivered once", async () => {
  await using f = await startCore({ store: "memory", metricsPort: 0 });
  const live = f.client.subscribeMessages({ room: "c", user: "watcher" });
  await take<Message>(live, 1);
  const chat = f.client.chat();
  const [m1, again, plain] = [
    { id: "m1", ...lines("c", ["hello", "k-1"])[0] },
    { id: "m1", ...lines("c", ["hello", "k-1"])[0] },
    { id: "m2", ...lines("c", ["plain", ""])[0] },
  ];
  chat.write(m1);
  chat.write(again);
  chat.write(plain);
  const echoes = await take<Message>(chat, 3);
  assert.deepEqual(echoes.map((m) => m.id), ["echo_m1", "echo_m1", "echo_m2"]);
  const got = await take<Message>(live, 2);
  assert.deepEqual(got.map((m) => m.content), ["hello", "plain"]);
  // After the first stream ended, a new one repeats it too.
  chat.end();
  const next = f.client.chat();
  next.write(again);
  assert.equal((await take<Message>(next, 1))[0].id, "echo_m1");
  next.end();
  live.cancel();
  assert.deepEqual(
    (await history(f.client, "c")).map((m) => m.content),
    ["hello", "plain"],
  );
  assert.equal((await keyMetrics(f)).repeats, 2);
});

for (const store of ["log", "sqlite"] as const) {
  Deno.test(`[${store}] UploadMessages sent again after a restart stores what it had not, in order, whatever the messages' own timestamps`, async () => {
    const dataDir = await Deno.makeTempDir();
    try {
      const options = { store, dataDir };
      // Telemetry: one sample's time two hours back, one with none. The
      // store's own time dates their keys.
      const first = lines("u", ["k1", "k-1"], ["k2", "k-2"]);
      first[0].timestamp = timestampFromMs(Date.now() - 2 * 3600_000);
      await withCore(options, (client) => upload(client, first));
      await withCore(options, async (client) => {
        // The first keyed message waits for the room's keys to be read;
        // the new keyed one and the unkeyed one behind it wait too.
        const again = [
          first[0],
          ...lines("u", ["k3", "k-3"], ["plain", ""]),
          first[1],
        ];
        assert.equal((await upload(client, again)).messageCount, 4);
        assert.deepEqual(
          (await history(client, "u")).map((m) => m.content),
          ["k1", "k2", "k3", "plain"],
        );
      });
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}

Deno.test("SendMessage: a post acknowledged by one core and sent again to another on the same Redis gets the first's answer", async () => {
  await using redis = await startRedisServer();
  await using a = await startCore({ broker: redis.url });
  await using b = await startCore({ broker: redis.url });
  // b reads the room's keys before a posts (a stale view to catch up on).
  await post(b.client, "b first", "kb");
  const first = await post(a.client, "from a", "ka");
  const again = await post(b.client, "from a", "ka");
  assert.equal(again.messageId, first.messageId);
  assert.equal(again.offset, first.offset);
  assert.deepEqual(
    (await history(b.client, "r")).map((m) => m.content),
    ["b first", "from a"],
  );
});

Deno.test("UploadMessages and Chat on Redis: messages another core stored with their keys are counted and echoed, not stored again", async () => {
  await using redis = await startRedisServer();
  await using a = await startCore({ broker: redis.url });
  await using b = await startCore({ broker: redis.url });
  const batch = lines("u", ["k1", "k-1"], ["k2", "k-2"]);
  assert.equal((await upload(a.client, batch)).messageCount, 2);
  // Ids with spaces and a % (the Redis script splits its key at spaces).
  const more = [
    ...batch,
    ...lines("u", ["k3", "k-3"]).map((m) => ({ ...m, id: "up 3 %20 ü" })),
  ];
  assert.equal((await upload(b.client, more)).messageCount, 3);
  const chat = b.client.chat();
  chat.write({ id: "m", ...batch[1] });
  assert.equal((await take<Message>(chat, 1))[0].id, "echo_m");
  chat.end();
  // A SendMessage with a streamed key is its repeat, on either core,
  // answered with the streamed message's id.
  const sent = await post(a.client, "k3", "k-3", "ann", "u");
  assert.deepEqual([sent.offset, sent.messageId], [3n, "up 3 %20 ü"]);
  const chatted = await post(a.client, "k2", "k-2", "ann", "u");
  assert.deepEqual([chatted.offset, chatted.messageId], [2n, ""]);
  assert.deepEqual(
    (await history(a.client, "u")).map((m) => m.content),
    ["k1", "k2", "k3"],
  );
});

Deno.test("SendMessage: two cores on one Redis given the same key at the same instant store it once and answer both with it", async () => {
  await using redis = await startRedisServer();
  await using a = await startCore({ broker: redis.url });
  await using b = await startCore({ broker: redis.url });
  const rounds = 20;
  for (let i = 0; i < rounds; i++) {
    const key = `race-${i}`;
    const answers = await Promise.all([
      post(a.client, `raced ${i}`, key),
      post(b.client, `raced ${i}`, key),
      post(a.client, `raced ${i}`, key),
      post(b.client, `raced ${i}`, key),
    ]);
    assert.equal(
      new Set(answers.map((r) => r.messageId)).size,
      1,
      `round ${i}: ${answers.map((r) => r.messageId)}`,
    );
  }
  const stored = await history(a.client, "r");
  assert.deepEqual(
    stored.map((m) => m.content),
    Array.from({ length: rounds }, (_, i) => `raced ${i}`),
  );
});

Deno.test("SendMessage on Redis: a key the index dropped for its bound while its post was pending, sent again in the same batch, is stored once", async () => {
  await using redis = await startRedisServer();
  // One key remembered: each new key drops the pending one before it.
  await using f = await startCore({ broker: redis.url, idempotencyKeys: 1 });
  const rounds = 10;
  for (let i = 0; i < rounds; i++) {
    // The first post's append is in flight while the others wait for the
    // next batch, all of them in it.
    const answers = await Promise.all([
      post(f.client, `plain ${i}`, `p-${i}`),
      post(f.client, `kept ${i}`, `k-${i}`),
      post(f.client, `other ${i}`, `o-${i}`),
      post(f.client, `kept ${i}`, `k-${i}`),
    ]);
    assert.equal(
      answers[3].messageId,
      answers[1].messageId,
      `round ${i}: ${answers.map((r) => r.messageId)}`,
    );
    assert.equal(answers[3].offset, answers[1].offset);
  }
  const stored = (await history(f.client, "r")).map((m) => m.content);
  assert.deepEqual(
    stored.filter((c) => c.startsWith("kept")),
    Array.from({ length: rounds }, (_, i) => `kept ${i}`),
  );
});

Deno.test("SendMessage on Redis: --idempotency-keys bounds each room's keys in Redis too, the oldest going first", async () => {
  await using redis = await startRedisServer();
  await using a = await startCore({ broker: redis.url, idempotencyKeys: 2 });
  // Another core: its own index never saw the keys, only Redis answers.
  await using b = await startCore({ broker: redis.url });
  const first = [];
  for (const k of ["k1", "k2", "k3"]) first.push(await post(a.client, k, k));
  const again = [];
  for (const k of ["k1", "k3"]) again.push(await post(b.client, k, k));
  // k1 was dropped for the bound: posted again; k3 is a repeat.
  assert.notEqual(again[0].messageId, first[0].messageId);
  assert.equal(again[1].messageId, first[2].messageId);
  assert.deepEqual(
    (await history(b.client, "r")).map((m) => m.content),
    ["k1", "k2", "k3", "k1"],
  );
});

Deno.test("SendMessage on Redis: a repeat another core stored first counts as a repeat, not as a message published", async () => {
  await using redis = await startRedisServer();
  await using a = await startCore({ broker: redis.url });
  await using b = await startCore({ broker: redis.url, metricsPort: 0 });
  const first = await post(a.client, "hello", "k");
  const again = await post(b.client, "hello", "k");
  assert.equal(again.messageId, first.messageId);
  assert.equal(again.offset, first.offset);
  assert.deepEqual(again.timestamp, first.timestamp);
  const metrics = await keyMetrics(b);
  assert.equal(metrics.repeats, 1);
  assert.equal(metrics.published, 0);
});

Deno.test("SendMessage through the edge: Connect JSON and gRPC-Web carry the idempotency key", async () => {
  await using stack = await startCoreEdge({}, { store: "memory" });
  const json = createClient(
    ChatService,
    createConnectTransport({
      baseUrl: stack.url,
      fetch: stack.fetch,
      useBinaryFormat: false,
    }),
  );
  const web = createClient(
    ChatService,
    createGrpcWebTransport({ baseUrl: stack.url, fetch: stack.fetch }),
  );
  const req = { user: "ann", room: "r", content: "hi", idempotencyKey: "k" };
  const first = await json.sendMessage(req);
  const again = await web.sendMessage(req);
  assert.equal(again.messageId, first.messageId);
  assert.equal(again.offset, 1n);
  const ctl = new AbortController();
  const it = json.subscribeMessages({ room: "r", user: "w", history: 5 }, {
    signal: ctl.signal,
  })[Symbol.asyncIterator]();
  await it.next(); // the welcome
  const stored = (await it.next()).value!;
  assert.equal(stored.idempotencyKey, "k");
  ctl.abort();
  await it.next().catch(() => {});
});

Deno.test("SendMessage: on Redis, a key another core stored after the room's history started again (a new epoch, offsets from 1) is found", async () => {
  await using redis = await startRedisServer();
  const options = { broker: redis.url, historyTtlMs: 300 };
  await using a = await startCore(options);
  await using b = await startCore(options);
  const send = (f: typeof a, room: string, key: string) =>
    f.client.sendMessage({
      user: "ann",
      room,
      content: key,
      idempotencyKey: key,
    });
  for (const room of ["short", "long"]) {
    for (const key of ["1", "2", "3"]) await send(a, room, key);
    await send(b, room, "b"); // b has read the room up to offset 3
  }
  await new Promise((r) => setTimeout(r, 600)); // both rooms expire
  // The new epoch holds fewer messages than b read of the old, and more.
  const short = await send(a, "short", "k");
  const long = await send(a, "long", "k");
  for (const key of ["4", "5", "6", "7"]) await send(a, "long", key);
  assert.equal((await send(b, "short", "k")).messageId, short.messageId);
  assert.equal((await send(b, "long", "k")).messageId, long.messageId);
  assert.deepEqual(
    (await history(b.client, "long")).map((m) => m.content),
    ["k", "4", "5", "6", "7"],
  );
});

Deno.test("SendMessage: on Redis, a key whose room started again (a new epoch) posts again, on the core that stored it too, instead of an offset of the lost epoch", async () => {
  await using redis = await startRedisServer();
  await using a = await startCore({ broker: redis.url, historyTtlMs: 300 });
  const first = await post(a.client, "first", "k");
  assert.equal(first.offset, 1n);
  await new Promise((r) => setTimeout(r, 600)); // the room expires
  // Offset 1 of the new epoch is another message now.
  const other = await post(a.client, "other", "");
  assert.equal(other.offset, 1n);
  const again = await post(a.client, "first", "k");
  assert.notEqual(again.messageId, first.messageId);
  assert.equal(again.offset, 2n);
  assert.deepEqual(
    (await history(a.client, "r")).map((m) => m.content),
    ["other", "first"],
  );
  // Within the new epoch, a repeat is still answered with the first's.
  const third = await post(a.client, "first", "k");
  assert.equal(third.messageId, again.messageId);
  assert.equal(third.offset, 2n);
});
