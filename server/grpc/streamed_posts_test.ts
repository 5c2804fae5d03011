import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { MessageSchema } from "../../gen/chat_pb.ts";
import { DEFAULT_CORE_CONFIG } from "../config.ts";
import type { Committed } from "../rooms/commit_queue.ts";
import type { AppendKey } from "../rooms/history_store.ts";
import { IdempotencyIndex, type StoredKey } from "../rooms/idempotency.ts";
import type { HandlerContext } from "./context.ts";
import { streamedPosts } from "./streamed_posts.ts";

/** A chat.Message whose content is `content`, as a stream carries it. */
const bytes = (content: string) =>
  toBinary(
    MessageSchema,
    create(MessageSchema, { id: `id-${content}`, content }),
  );
const contentOf = (body: Uint8Array) => fromBinary(MessageSchema, body).content;

/**
 * A hub whose commits wait for `commit()` and then complete in publish
 * order, as the real one's do; `read` stands for the store's keys read
 * back (undefined: a store that checks keys itself, so none).
 */
function setUp(read?: () => Promise<{ keys: StoredKey[]; last: number }>) {
  const published: string[] = [];
  const pending: Committed[] = [];
  let offset = 0;
  const hub = {
    publish(room: string, body: Uint8Array, done: Committed, _k?: AppendKey) {
      published.push(`${room}:${contentOf(body)}`);
      pending.push(done);
    },
    store: {},
  };
  const idempotency = new IdempotencyIndex({
    windowMs: 60_000,
    maxKeys: 100,
    read: read && (() => read()),
  });
  const ctx = {
    hub,
    config: DEFAULT_CORE_CONFIG,
    idempotency,
  } as unknown as HandlerContext;
  const reported: string[] = [];
  const holds: string[] = [];
  let names: string[] = [];
  const poster = streamedPosts(ctx, (err) => {
    reported.push(err ? `${names.shift()}!${err.code}` : names.shift()!);
  }, {
    pause: () => holds.push("pause"),
    resume: () => holds.push("resume"),
  });
  return {
    published,
    reported,
    holds,
    idempotency,
    post(room: string, body: string, key = "", user = "ann") {
      names.push(body);
      poster.post(room, user, key, bytes(body));
    },
    stop: () => poster.stop(),
    /** Commits everything published so far. */
    commit() {
      for (const done of pending.splice(0)) {
        done(undefined, { offset: ++offset, epoch: "e" });
      }
    },
    reset: () => names = [],
    /** Commits everything published so far but the last `n`. */
    commitAllBut(n: number) {
      for (const done of pending.splice(0, pending.length - n)) {
        done(undefined, { offset: ++offset, epoch: "e" });
      }
    },
    listed: () => poster.listed,
  };
}

Deno.test("streamedPosts: unkeyed messages go to the hub at once and are reported in order", () => {
  const t = setUp();
  t.post("r", "a");
  t.post("s", "b");
  assert.deepEqual(t.published, ["r:a", "s:b"]);
  assert.deepEqual(t.reported, []);
  t.commit();
  assert.deepEqual(t.reported, ["a", "b"]);
});

Deno.test("streamedPosts: a repeated key is stored once and reported in its place, after the messages before it", () => {
  const t = setUp();
  t.post("r", "a");
  t.post("r", "k1", "key-1");
  t.post("r", "k1 again", "key-1"); // waits for the first's commit
  t.post("r", "b");
  assert.deepEqual(t.published, ["r:a", "r:k1", "r:b"]);
  t.commit();
  assert.deepEqual(t.reported, ["a", "k1", "k1 again", "b"]);
  // Known now: answered at once, but still after what came before it.
  t.post("r", "c");
  t.post("r", "k1 third", "key-1");
  t.post("r", "k2", "key-2");
  assert.deepEqual(t.reported, ["a", "k1", "k1 again", "b"]);
  t.commit();
  assert.deepEqual(t.reported.slice(4), ["c", "k1 third", "k2"]);
  assert.deepEqual(t.published.slice(3), ["r:c", "r:k2"]);
  assert.equal(t.idempotency.repeats, 2);
  // Per user: another user's same key is a new message.
  t.post("r", "bob's", "key-1", "bob");
  assert.deepEqual(t.published.slice(5), ["r:bob's"]);
});

Deno.test("streamedPosts: messages behind a keyed one that waits for its room's keys wait too, with the reader paused, and go in order", async () => {
  let release!: (v: { keys: StoredKey[]; last: number }) => void;
  const t = setUp(() => new Promise((resolve) => release = resolve));
  t.post("r", "a"); // before any key: at once
  t.post("r", "k", "key-1");
  t.post("r", "b");
  t.post("s", "c");
  t.post("r", "stored before", "key-0");
  assert.deepEqual(t.published, ["r:a"]);
  assert.deepEqual(t.holds, ["pause"]);
  t.commit();
  assert.deepEqual(t.reported, ["a"]);
  // The room held key-0 before a restart.
  release({
    keys: [{
      id: "msg_9",
      user: "ann",
      key: "key-0",
      timeMs: Date.now(),
      offset: 9,
    }],
    last: 9,
  });
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(t.published, ["r:a", "r:k", "r:b", "s:c"]);
  // Reading resumed (key-0, posted while the room's queue ran, held it
  // again until its turn in that queue).
  assert.equal(t.holds.at(-1), "resume");
  assert.equal(t.holds.filter((h) => h === "pause").length, t.holds.length / 2);
  t.commit();
  assert.deepEqual(t.reported, ["a", "k", "b", "c", "stored before"]);
});

Deno.test("streamedPosts: a failed read fails the keyed message, the ones behind it still go; after stop() the ones accepted still go, in order, and reading is not resumed", async () => {
  let fail!: (err: unknown) => void;
  const t = setUp(() => new Promise((_, reject) => fail = reject));
  t.post("r", "k", "key-1");
  t.post("r", "b");
  fail(Object.assign(new Error("down"), { code: "unavailable" }));
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(t.published, ["r:b"]);
  t.commit();
  assert.deepEqual(t.reported, ["k!unavailable", "b"]);

  let release!: (v: { keys: StoredKey[]; last: number }) => void;
  const u = setUp(() => new Promise((resolve) => release = resolve));
  u.post("r", "k", "key-1");
  u.post("r", "behind");
  u.post("r", "keyed behind", "key-2");
  u.stop();
  release({ keys: [], last: 0 });
  await Promise.resolve();
  await Promise.resolve();
  // Accepted before the call ended: stored, as an upload's messages before
  // a bad one are without keys.
  assert.deepEqual(u.published, ["r:k", "r:behind", "r:keyed behind"]);
  assert.deepEqual(u.holds, ["pause"]);
  u.commit();
  assert.deepEqual(u.reported, ["k", "behind", "keyed behind"]);
});

Deno.test("streamedPosts: a long stream of keyed messages, never all committed at once (an async store under a pipelining client), keeps its memory bounded", () => {
  const t = setUp();
  for (let i = 0; i < 20_000; i++) {
    t.post("r", `m${i}`, `key-${i}`);
    t.commitAllBut(1);
    assert.equal(t.reported.length, i);
  }
  // The reported ones went: the list holds the few still pending, not
  // one slot per message the stream ever sent.
  assert.ok(t.listed() < 4096, `${t.listed()} slots listed`);
  t.commit();
  assert.equal(t.reported.length, 20_000);
  assert.deepEqual(t.reported.slice(-2), ["m19998", "m19999"]);
});

Deno.test("streamedPosts: repeats answered at once while the poster walks its slots from inside the index's drain are reported in order, the list shrinking under the walk", async () => {
  const stored: StoredKey = {
    id: "msg_9",
    user: "ann",
    key: "key-0",
    timeMs: Date.now(),
    offset: 9,
  };
  const t = setUp(() => Promise.resolve({ keys: [stored], last: 9 }));
  t.post("r", "first", "key-0");
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(t.reported, ["first"]);
  // "gate" waits for room q's keys; behind it, repeats of a key room r
  // knows now: once q's keys are read, the walk answers them all at once.
  t.post("q", "gate", "key-0");
  const behind = Array.from({ length: 3000 }, (_, i) => `m${i}`);
  for (const m of behind) t.post("r", m, "key-0");
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(t.reported, ["first", "gate", ...behind]);
  assert.deepEqual(t.published, []);
  assert.equal(t.listed(), 0);
  assert.equal(t.holds.at(-1), "resume");
});
