import assert from "node:assert/strict";
import {
  IdempotencyIndex,
  type IdempotencyOptions,
  type PostAnswer,
  type PostResult,
  type StoredKey,
} from "./idempotency.ts";

/** An index over a scripted store: `stored` per room, a settable clock. */
function setup(options: Partial<IdempotencyOptions> = {}) {
  const clock = { now: 1_000_000 };
  const stored = new Map<string, StoredKey[]>();
  let reads = 0;
  let failRead: Error | undefined;
  let nextOffset = 1;
  const index = new IdempotencyIndex({
    windowMs: 60_000,
    maxKeys: 100,
    now: () => clock.now,
    read: (room, after) => {
      reads++;
      if (failRead) return Promise.reject(failRead);
      const keys = (stored.get(room) ?? []).filter((k) => k.offset > after);
      return Promise.resolve({ keys, last: keys.at(-1)?.offset ?? after });
    },
    ...options,
  });
  /** Posts; resolves with [result or error, published for real]. */
  const post = (
    key: string,
    opts: { room?: string; user?: string; fail?: Error; throws?: Error } = {},
  ) =>
    new Promise<{ result?: PostResult; err?: unknown; published: boolean }>(
      (resolve) => {
        let published = false;
        const answer: PostAnswer = (err, result) =>
          resolve({ err, result, published });
        index.post(opts.room ?? "r", opts.user ?? "ann", key, (done) => {
          if (opts.throws) throw opts.throws;
          published = true;
          if (opts.fail) return done(opts.fail);
          done(undefined, {
            id: `msg_${nextOffset}`,
            timeMs: clock.now,
            offset: nextOffset++,
          });
        }, answer);
      },
    );
  return {
    index,
    clock,
    stored,
    post,
    get reads() {
      return reads;
    },
    failReads(e: Error | undefined) {
      failRead = e;
    },
  };
}

Deno.test("IdempotencyIndex: a repeat gets the first's result; another user or room is another key", async () => {
  const t = setup();
  const a = await t.post("k");
  const b = await t.post("k");
  assert.ok(a.published && !b.published);
  assert.deepEqual(b.result, a.result);
  assert.ok((await t.post("k", { user: "bob" })).published);
  assert.ok((await t.post("k", { room: "other" })).published);
  assert.equal(t.index.repeats, 1);
  assert.equal(t.index.size, 3);
});

Deno.test("IdempotencyIndex: a user's key is never another user's, whatever characters the names and keys hold", async () => {
  const t = setup();
  await t.post("x\ny", { user: "ann" });
  assert.ok((await t.post("y", { user: "ann\nx" })).published);
  await t.post("b", { user: "1:a" });
  assert.ok((await t.post("1:ab", { user: "" })).published);
  t.stored.set("read", [
    { user: "ann", key: "x\ny", id: "msg_7", timeMs: t.clock.now, offset: 7 },
  ]);
  assert.ok((await t.post("y", { room: "read", user: "ann\nx" })).published);
});

Deno.test("IdempotencyIndex: a failed post, or one refused before it was stored, frees its key and fails its waiters", async () => {
  const t = setup();
  await t.post("warm"); // the room's keys are read
  const down = new Error("store down");
  let release!: (err: unknown) => void;
  const answers: unknown[] = [];
  t.index.post(
    "r",
    "ann",
    "k",
    (done) => release = done,
    (e) => answers.push(e),
  );
  t.index.post(
    "r",
    "ann",
    "k",
    () => assert.fail("published twice"),
    (e) => answers.push(e),
  );
  release(down);
  assert.deepEqual(answers, [down, down]);
  assert.ok((await t.post("k")).published, "sent again: published");
  const tooLarge = await t.post("big", { throws: new Error("too large") });
  assert.equal((tooLarge.err as Error).message, "too large");
  assert.ok((await t.post("big")).published);
});

Deno.test("IdempotencyIndex: keys stored before (a restart) are read once per room, posts waiting in order; a failed read fails them and is tried again", async () => {
  const t = setup();
  t.stored.set("r", [
    {
      user: "ann",
      key: "old",
      id: "msg_7",
      timeMs: t.clock.now - 1000,
      offset: 7,
    },
    {
      user: "ann",
      key: "stale",
      id: "msg_8",
      timeMs: t.clock.now - 120_000,
      offset: 8,
    },
  ]);
  t.failReads(new Error("unavailable"));
  assert.equal(((await t.post("old")).err as Error).message, "unavailable");
  t.failReads(undefined);
  const order: string[] = [];
  const waits = ["old", "new", "old"].map((k) =>
    t.post(k).then((r) => {
      order.push(`${k}:${r.result?.id}:${r.published}`);
      return r;
    })
  );
  await Promise.all(waits);
  assert.deepEqual(order, [
    "old:msg_7:false",
    "new:msg_1:true",
    "old:msg_7:false",
  ]);
  // Outside the window when stored: a new post.
  assert.ok((await t.post("stale")).published);
  assert.equal(t.reads, 2);
});

Deno.test("IdempotencyIndex: keys go after the window; a quiet room is not read again for its next post", async () => {
  const t = setup();
  const a = await t.post("a");
  assert.equal(t.reads, 1);
  t.clock.now += 60_001;
  const again = await t.post("a");
  assert.ok(again.published, "after the window: a new post");
  assert.notEqual(again.result?.id, a.result?.id);
  assert.equal(t.reads, 1, "the room's keys were read once");
  assert.equal(t.index.size, 1);
});

Deno.test("IdempotencyIndex: past maxKeys the oldest keys go, and a room read again does not take them back", async () => {
  const t = setup({ maxKeys: 2 });
  const first = await t.post("a", { room: "r1" });
  t.clock.now += 10;
  await t.post("b", { room: "r2" });
  await t.post("c", { room: "r3" }); // "a" goes, and r1 from the rooms read
  assert.equal(t.index.size, 2);
  // "a" is in r1's store, but it was dropped for the bound: r1 is read
  // again and does not take it back.
  t.stored.set("r1", [{ user: "ann", key: "a", ...first.result! }]);
  const reads = t.reads;
  assert.ok((await t.post("a", { room: "r1" })).published);
  assert.equal(t.reads, reads + 1);
  assert.ok(t.index.size <= 2);
});

Deno.test("IdempotencyIndex: with no read (a store that checks keys itself) a post is published at once; a repeat the store found is answered and counted", async () => {
  const t = setup({ read: undefined });
  const first = await t.post("k");
  assert.ok(first.published);
  // Known here: answered without the store.
  assert.deepEqual((await t.post("k")).result, first.result);
  // Another core stored "theirs": the store says so as it is published.
  const theirs = { id: "msg_50", timeMs: t.clock.now, offset: 50 };
  const answered = await new Promise<PostResult | undefined>((resolve) =>
    t.index.post(
      "r",
      "ann",
      "theirs",
      (done) => done(undefined, theirs, true),
      (_err, result) => resolve(result),
    )
  );
  assert.deepEqual(answered, theirs);
  assert.equal(t.index.repeats, 2);
  assert.equal(t.reads, 0);
});

Deno.test("IdempotencyIndex: a room whose last key expired keeps the next post's key (its repeat waits, then gets its answer)", async () => {
  const t = setup();
  await t.post("old");
  t.clock.now += 60_001; // "old" goes, and with it the room's last key
  let release!: PostAnswer;
  const answers: unknown[] = [];
  t.index.post("r", "ann", "k", (done) => release = done, (_e, r) => {
    answers.push(r?.id);
  });
  t.index.post("r", "ann", "k", () => assert.fail("published twice"), (
    _e,
    r,
  ) => answers.push(r?.id));
  release(undefined, { id: "msg_9", timeMs: t.clock.now, offset: 9 });
  assert.deepEqual(answers, ["msg_9", "msg_9"]);
  const again = await t.post("k");
  assert.equal(again.published, false);
  assert.equal(again.result?.id, "msg_9");
});

Deno.test("IdempotencyIndex: a post refused at once while a room's keys were read does not lose the keys of the posts queued after it", async () => {
  let loaded!: () => void;
  const t = setup({
    read: () =>
      new Promise((resolve) => loaded = () => resolve({ keys: [], last: 0 })),
  });
  const refused = t.post("big", { throws: new Error("too large") });
  let release!: PostAnswer;
  const answers: unknown[] = [];
  t.index.post("r", "ann", "k", (done) => release = done, (_e, r) => {
    answers.push(r?.id);
  });
  loaded();
  assert.equal(((await refused).err as Error).message, "too large");
  // "k" is still being stored: its repeat waits for it.
  t.index.post("r", "ann", "k", () => assert.fail("published twice"), (
    _e,
    r,
  ) => answers.push(r?.id));
  release(undefined, { id: "msg_3", timeMs: t.clock.now, offset: 3 });
  assert.deepEqual(answers, ["msg_3", "msg_3"]);
});

Deno.test("IdempotencyIndex: a stored key dated ahead of now is kept as if stored now: it neither holds later keys past the window nor sets the bound's mark ahead", async () => {
  const t = setup({ maxKeys: 3 });
  const ahead = t.clock.now + 10 * 365 * 86_400_000;
  t.stored.set("far", [
    { user: "ann", key: "f", id: "msg_5", timeMs: ahead, offset: 5 },
  ]);
  const f = await t.post("f", { room: "far" });
  assert.equal(f.published, false);
  assert.equal(f.result?.timeMs, ahead, "answered with the stored time");
  const k = await t.post("k");
  t.clock.now += 60_001;
  const again = await t.post("k");
  assert.ok(again.published, "past the window: posted again");
  assert.notEqual(again.result?.id, k.result?.id);
  // Keys dropped for the bound do not hide keys stored since from a read.
  t.clock.now += 1000;
  await t.post("a");
  await t.post("b");
  await t.post("c");
  t.stored.set("late", [
    { user: "ann", key: "l", id: "msg_9", timeMs: t.clock.now, offset: 9 },
  ]);
  const late = await t.post("l", { room: "late" });
  assert.equal(late.published, false);
  assert.equal(late.result?.id, "msg_9");
});

Deno.test("IdempotencyIndex: failed posts behind a live key do not pile up in the expiry order", async () => {
  const t = setup({ maxKeys: 100_000 });
  await t.post("live"); // the head, for the whole window
  const down = new Error("store down");
  for (let i = 0; i < 10_000; i++) await t.post(`k${i}`, { fail: down });
  assert.equal(t.index.size, 1);
  assert.ok(t.index.listed <= 2048, `${t.index.listed} entries listed`);
});
