import assert from "node:assert/strict";
import { type Batch, decodeBatch, RoomFeed } from "./room_feed.ts";
import { redisRoomModel } from "../../tests/support/redis_room_model.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const batch = (epoch: string, first: number, ...texts: string[]): Batch => ({
  epoch,
  first,
  bodies: texts.map((t) => enc.encode(t)),
});

function feedWith(stream: Map<number, string>, epoch = "e1", last = 0) {
  const got: string[] = [];
  const fills: number[] = [];
  const feed = new RoomFeed(
    epoch,
    last,
    (e, offset, body) => got.push(`${e}:${offset}:${dec.decode(body)}`),
    (after, limit) => {
      fills.push(after);
      const texts: string[] = [];
      for (let o = after + 1; stream.has(o) && texts.length < limit; o++) {
        texts.push(stream.get(o)!);
      }
      return Promise.resolve(batch(epoch, after + 1, ...texts));
    },
  );
  return { feed, got, fills };
}

Deno.test("RoomFeed delivers consecutive batches, skips what it already delivered, and fills a gap from the stream", async () => {
  const stream = new Map([[1, "a"], [2, "b"], [3, "c"], [4, "d"], [5, "e"]]);
  const { feed, got, fills } = feedWith(stream);
  feed.push(batch("e1", 1, "a"));
  feed.push(batch("e1", 1, "a", "b")); // overlap: only b is new
  feed.push(batch("e1", 5, "e")); // 3 and 4 were lost
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(fills, [2]);
  assert.deepEqual(got, ["e1:1:a", "e1:2:b", "e1:3:c", "e1:4:d", "e1:5:e"]);
  assert.equal(feed.filled, 3);
  assert.equal(feed.last, 5);
});

Deno.test("RoomFeed follows a new epoch from its first offset, once the stream says it is the room's", async () => {
  const got: string[] = [];
  let current = "e1";
  const feed = new RoomFeed(
    "e1",
    0,
    (e, offset, body) => got.push(`${e}:${offset}:${dec.decode(body)}`),
    (after) =>
      Promise.resolve(batch(current, after + 1, ...(after ? [] : ["x"]))),
  );
  feed.push(batch("e1", 1, "a"));
  current = "e2"; // the room's history was lost; e2 starts with x
  feed.push(batch("e2", 1, "x"));
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(got, ["e1:1:a", "e2:1:x"]);
  assert.equal(feed.epoch, "e2");
  // A publication of e1 still on its way is not followed back.
  feed.push(batch("e1", 2, "b"));
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(got, ["e1:1:a", "e2:1:x"]);
  assert.equal(feed.epoch, "e2");
});

Deno.test("RoomFeed keeps a batch while the stream cannot be read and delivers it, gap filled, on the next catchUp()", async () => {
  const got: number[] = [];
  let down = true;
  const feed = new RoomFeed("e", 0, (_e, o) => got.push(o), (after) => {
    if (down) return Promise.reject(new Error("down"));
    return Promise.resolve(batch("e", after + 1, "1", "2"));
  });
  feed.push(batch("e", 3, "3"));
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(got, []);
  down = false;
  await feed.catchUp();
  assert.deepEqual(got, [1, 2, 3]);
});

Deno.test("RoomFeed drops a waiting batch of an epoch the stream has left, and reads once more, instead of going back to it", async () => {
  const got: string[] = [];
  const fills: number[] = [];
  // The stream restarted in e2 with x, y; then z came in e2 meanwhile.
  const stream = ["x", "y"];
  const feed = new RoomFeed(
    "e1",
    0,
    (e, offset, body) => got.push(`${e}:${offset}:${dec.decode(body)}`),
    (after) => {
      fills.push(after);
      return Promise.resolve(batch("e2", after + 1, ...stream.slice(after)));
    },
  );
  feed.push(batch("e1", 3, "c")); // a gap in e1: the fill finds e2
  stream.push("z"); // published while the fill ran; its batch got lost
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(got, ["e2:1:x", "e2:2:y", "e2:3:z"]);
  assert.equal(feed.epoch, "e2");
  assert.ok(fills.length <= 4, `${fills.length} fills`);
});

Deno.test("RoomFeed keeps a batch of another epoch until a read settles it: a newer one is delivered even when the stream no longer has it", async () => {
  const got: string[] = [];
  const answers: (() => Promise<Batch>)[] = [
    // The stream is still in e1 (3, 4); e2 starts meanwhile.
    () => Promise.resolve(batch("e1", 3, "c", "d")),
    // The read that would settle it fails (Redis went away).
    () => Promise.reject(new Error("down")),
    // Back: the stream is in e2 (the feed follows it and reads again),
    // its first message already trimmed.
    () => Promise.resolve(batch("e2", 1)),
    () => Promise.resolve(batch("e2", 1)),
  ];
  const feed = new RoomFeed(
    "e1",
    2,
    (e, offset, body) => got.push(`${e}:${offset}:${dec.decode(body)}`),
    () => answers.shift()!(),
  );
  feed.push(batch("e1", 5, "e")); // a gap: 3 and 4 are read
  feed.push(batch("e2", 1, "x")); // arrives while the gap is read
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ["e1:3:c", "e1:4:d", "e1:5:e"]);
  await feed.catchUp(); // the reconnect
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ["e1:3:c", "e1:4:d", "e1:5:e", "e2:1:x"]);
  assert.equal(answers.length, 0);
});

Deno.test("RoomFeed reads again for a batch that came in during a read, rather than skipping what the read had not seen", async () => {
  const got: number[] = [];
  const stream = ["1", "2", "3", "4"];
  const reads: (() => void)[] = [];
  const feed = new RoomFeed(
    "e",
    2,
    (_e, offset) => got.push(offset),
    (after) => {
      const seen = stream.slice(after); // as of when the read began
      return new Promise((resolve) =>
        reads.push(() => resolve(batch("e", after + 1, ...seen)))
      );
    },
  );
  void feed.catchUp(); // a reconnect: the read sees the stream up to 4
  stream.push("5", "6"); // 5's publication is lost, 6's comes in
  feed.push(batch("e", 6, "6"));
  reads.shift()!(); // the read, as of before 5
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(reads.length, 1); // read again, not skipped to 6
  reads.shift()!();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(got, [3, 4, 5, 6]);
  assert.equal(feed.last, 6);
});

Deno.test("decodeBatch() reads what the append script publishes and refuses truncated payloads", () => {
  const body = enc.encode("hi");
  const payload = new Uint8Array([
    ...enc.encode("ep\n7\n"),
    0,
    0,
    0,
    2,
    ...body,
  ]);
  const b = decodeBatch(payload);
  assert.equal(b.epoch, "ep");
  assert.equal(b.first, 7);
  assert.deepEqual(b.bodies.map((x) => dec.decode(x)), ["hi"]);
  assert.throws(() => decodeBatch(payload.subarray(0, 8)), /malformed/);
  assert.throws(() => decodeBatch(enc.encode("no newline")), /malformed/);
});

/** A feed of the room of `redisRoomModel`, driven at random. */
function feedModel(seed: number, keep: number) {
  const m = redisRoomModel(seed, keep);
  const got: [string, number, string][] = [];
  const feed = new RoomFeed(
    "e0",
    0,
    (e, offset, body) => got.push([e, offset, dec.decode(body)]),
    m.fill,
  );
  const step = () => {
    const r = m.random(100);
    if (r < 30) m.publish();
    else if (r < 33) m.restart();
    else if (r < 68) m.deliverOne(feed);
    else if (r < 90) m.answerOne();
    else if (r < 95) void feed.catchUp(); // a reconnect
  };
  return { ...m, feed, got, step };
}

Deno.test("RoomFeed against a model of Redis: every delivery is a stored message, each epoch one run of rising offsets, and it ends where the stream does", async () => {
  // Fills answer through promises only: a few microtask turns settle them.
  const tick = async () => {
    for (let i = 0; i < 20; i++) await null;
  };
  for (let seed = 1; seed <= 500; seed++) {
    const keep = seed % 3 === 0 ? 5 : 1_000_000;
    const m = feedModel(seed, keep);
    for (let i = 0; i < 300; i++) {
      m.step();
      if (i % 10 === 0) await tick();
    }
    // Everything arrives, every fill answers, and one more reconnect.
    while (m.pubsub.length > 0) m.deliverOne(m.feed);
    void m.feed.catchUp();
    for (let i = 0; i < 100 && (m.commands.length > 0 || i < 3); i++) {
      m.answerOne(false);
      await tick();
    }
    const where = `seed ${seed}`;
    assert.equal(m.commands.length, 0, where);
    const seenEpochs: string[] = [];
    for (let i = 0; i < m.got.length; i++) {
      const [e, offset, text] = m.got[i];
      assert.equal(text, `${e}/${offset}`, where);
      if (seenEpochs.at(-1) !== e) {
        assert.ok(!seenEpochs.includes(e), `${where}: back to ${e}`);
        seenEpochs.push(e);
      } else {
        assert.ok(offset > m.got[i - 1][1], `${where}: ${e} ${offset} again`);
      }
    }
    const { epoch, offset: last } = m.now();
    assert.equal(m.feed.epoch, epoch, where);
    assert.equal(m.feed.last, last, where);
    m.feed.close(); // a retry timer of a failed read may be set
    if (keep > 300 * 3) {
      // Nothing trimmed: the last epoch came whole.
      const run = m.got.filter(([e]) => e === epoch).map(([, o]) => o);
      assert.deepEqual(
        run,
        Array.from({ length: last }, (_, i) => i + 1),
        where,
      );
    }
  }
});

Deno.test("RoomFeed tries a failed read again by itself when batches wait, and holds a bounded number of them while a read hangs", async () => {
  const got: string[] = [];
  let fails = 1;
  const feed = new RoomFeed(
    "e1",
    5,
    (e, offset) => got.push(`${e}:${offset}`),
    () =>
      fails-- > 0
        ? Promise.reject(new Error("LOADING")) // the connection stays up
        : Promise.resolve(batch("e2", 1, "x")),
  );
  feed.push(batch("e2", 1, "x")); // a new epoch: a read settles it
  await new Promise((r) => setTimeout(r, 1100));
  assert.deepEqual(got, ["e2:1"]);
  feed.close();

  const hung = new RoomFeed("e", 0, () => {}, () => new Promise(() => {}));
  for (let i = 2; i < 100_002; i++) hung.push(batch("e", i, "m"));
  assert.equal(hung.last, 0);
  assert.equal(hung.held, 4096); // the newest; the stream has the rest
  hung.close();
});
