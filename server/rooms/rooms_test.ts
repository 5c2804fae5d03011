import assert from "node:assert/strict";
import { ChatHub } from "./hub.ts";
import { RingBuffer } from "./ring_buffer.ts";
import { type Member, RoomRegistry } from "./room_registry.ts";
import { ChatError } from "./errors.ts";
import type { HistoryStore, RoomPosition } from "./history_store.ts";
import type { Replay } from "./hub.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import { type Sink, Subscriber } from "./subscriber.ts";

/** A sink that accepts `room` items, then pushes back until drained. */
function sink<T = number>(
  room = Infinity,
): Sink<T> & { got: T[]; room: number } {
  const s = {
    got: [] as T[],
    room,
    write(item: T) {
      s.got.push(item);
      return s.got.length < s.room;
    },
  };
  return s;
}

Deno.test("RingBuffer keeps FIFO order across wrap-around and refuses when full", () => {
  const ring = new RingBuffer<number>(3);
  assert.ok(ring.push(1) && ring.push(2) && ring.push(3));
  assert.equal(ring.push(4), false);
  assert.equal(ring.shift(), 1);
  assert.ok(ring.push(4));
  assert.deepEqual([ring.shift(), ring.shift(), ring.shift(), ring.shift()], [
    2,
    3,
    4,
    undefined,
  ]);
  assert.throws(() => new RingBuffer(0), RangeError);
});

Deno.test("Subscriber.deliver() writes straight through until the sink pushes back", () => {
  const s = sink(2);
  const sub = new Subscriber(s, { capacity: 2, policy: "drop" });
  sub.deliver(1);
  sub.deliver(2); // the sink takes it but asks for a pause
  sub.deliver(3);
  sub.deliver(4);
  assert.deepEqual(s.got, [1, 2]);
  assert.equal(sub.queued, 2);
  s.room = Infinity;
  sub.resume();
  assert.deepEqual(s.got, [1, 2, 3, 4]);
  assert.equal(sub.queued, 0);
});

Deno.test("Subscriber drop policy counts drops and keeps the oldest queued items", () => {
  const s = sink(1);
  let drops = 0;
  const sub = new Subscriber(s, {
    capacity: 2,
    policy: "drop",
    onDrop: () => drops++,
  });
  for (let i = 1; i <= 6; i++) sub.deliver(i);
  assert.equal(sub.dropped, 3);
  assert.equal(drops, 3);
  s.room = Infinity;
  sub.resume();
  assert.deepEqual(s.got, [1, 2, 3]);
  assert.equal(sub.closed, false);
});

Deno.test("Subscriber disconnect policy closes once and calls onOverflow once", () => {
  const s = sink(1);
  let overflows = 0;
  const sub = new Subscriber(s, {
    capacity: 1,
    policy: "disconnect",
    onOverflow: () => overflows++,
  });
  for (let i = 1; i <= 5; i++) sub.deliver(i);
  assert.equal(overflows, 1);
  assert.equal(sub.closed, true);
  assert.equal(sub.queued, 0);
  sub.resume();
  assert.deepEqual(s.got, [1]);
});

/** A member of a registry room, live from the start. */
function member(s: Sink<number>): Member<number> {
  return {
    subscriber: new Subscriber(s, { capacity: 1, policy: "drop" }),
    live: true,
    delivered: 0,
    epoch: "", // joined before the room had one
  };
}

Deno.test("RoomRegistry.publish() reaches only the room's live members; leave() is idempotent and drops empty rooms", () => {
  const rooms = new RoomRegistry<number>();
  const a = sink(), b = sink(), c = sink(), d = sink();
  const memberA = member(a), memberC = member(c);
  rooms.join("x", memberA);
  const room = rooms.join("x", member(b));
  rooms.join("x", { ...member(d), live: false });
  rooms.join("y", memberC);
  const leaveA = () => rooms.leave("x", memberA);
  const leaveC = () => rooms.leave("y", memberC);
  let built = 0;
  const build = () => (built++, 7);
  const none = new Uint8Array(0);
  assert.equal(rooms.publish("x", 1, "e", build, none), 2);
  assert.equal(built, 1);
  assert.deepEqual([a.got, b.got, c.got, d.got], [[7], [7], [], []]);
  assert.equal(room.last, 1);
  leaveA();
  leaveA();
  assert.equal(rooms.subscriberCount, 3);
  leaveC();
  assert.equal(rooms.roomCount, 1);
  assert.equal(rooms.publish("y", 1, "e", build, none), 0);
});

const text = new TextEncoder();
const untext = new TextDecoder();

interface Item {
  offset: number;
  epoch: string;
  text: string;
}

function testHub(
  options: { capacity?: number; policy?: "drop" | "disconnect" } = {},
  store = createMemoryStore({ size: 1000, ttlMs: 0 }),
) {
  const hub = new ChatHub<Item>({
    queueCapacity: options.capacity ?? 10,
    policy: options.policy ?? "drop",
    store,
    item: (body, offset, epoch) => ({
      offset,
      epoch,
      text: untext.decode(body),
    }),
  });
  const publish = (room: string, content: string) =>
    new Promise<number>((resolve, reject) =>
      hub.publish(
        room,
        text.encode(content),
        (err, stored) => err ? reject(err) : resolve(stored!.offset),
      )
    );
  return { hub, store, publish };
}

const itemSink = (room = Infinity) => sink<Item>(room);

function subscribe(
  hub: ChatHub<Item>,
  room: string,
  s: Sink<Item>,
  replay: Replay = {},
) {
  const errors: unknown[] = [];
  let overflowed = false;
  const sub = hub.subscribe(room, s, {
    ...replay,
    welcome: (p) => ({ offset: p.offset, epoch: p.epoch, text: "welcome" }),
    onOverflow: () => overflowed = true,
    onError: (err) => errors.push(err),
  });
  return { ...sub, errors, overflowed: () => overflowed };
}

/** Lets commits (setImmediate) and replay pages (setTimeout 0) run. */
const settle = () => new Promise((r) => setTimeout(r, 20));

Deno.test("ChatHub.publish() stores, then delivers one shared item to live subscribers, then acknowledges with consecutive offsets", async () => {
  const { hub, store, publish } = testHub();
  const a = itemSink(), b = itemSink();
  subscribe(hub, "r", a);
  subscribe(hub, "r", b);
  await settle();
  const offsets = await Promise.all([
    publish("r", "one"),
    publish("r", "two"),
    publish("other", "x"),
    publish("r", "three"),
  ]);
  assert.deepEqual(offsets, [1, 2, 1, 3]);
  assert.deepEqual(a.got.map((m) => [m.offset, m.text]), [
    [0, "welcome"],
    [1, "one"],
    [2, "two"],
    [3, "three"],
  ]);
  assert.ok(a.got.every((m, i) => i === 0 || m === b.got[i]));
  assert.equal(new Set(a.got.map((m) => m.epoch)).size, 1);
  assert.equal(hub.stats.messagesPublished, 4);
  assert.equal(hub.stats.deliveries, 6);
  assert.equal(store.status().commits, 1); // one turn, one commit
  store.close();
});

Deno.test("ChatHub.subscribe() with history replays the last N, then live, with no gap and no duplicate while publishing goes on", async () => {
  const { hub, store, publish } = testHub({ capacity: 4 });
  const first = [];
  for (let i = 1; i <= 50; i++) first.push(publish("r", `m${i}`));
  await Promise.all(first);
  const s = itemSink();
  subscribe(hub, "r", s, { history: 20 });
  // Publishes go on while the replay runs.
  const more = [];
  for (let i = 51; i <= 60; i++) more.push(publish("r", `m${i}`));
  await Promise.all(more);
  while (s.got.length < 31) await settle();
  assert.deepEqual(s.got[0], {
    offset: 50,
    epoch: s.got[1].epoch,
    text: "welcome",
  });
  assert.deepEqual(
    s.got.slice(1).map((m) => m.offset),
    Array.from({ length: 30 }, (_, i) => 31 + i),
  );
  assert.deepEqual(s.got.at(-1)!.text, "m60");
  store.close();
});

Deno.test("ChatHub.subscribe() resumes after since_offset in the room's epoch and replays nothing for another epoch", async () => {
  const { hub, store, publish } = testHub();
  for (let i = 1; i <= 10; i++) await publish("r", `m${i}`);
  const first = itemSink();
  subscribe(hub, "r", first);
  await settle();
  const epoch = first.got[0].epoch;
  const resumed = itemSink();
  subscribe(hub, "r", resumed, { epoch, sinceOffset: 7 });
  const wrong = itemSink();
  subscribe(hub, "r", wrong, { epoch: "not-it", sinceOffset: 7, history: 5 });
  const caughtUp = itemSink();
  subscribe(hub, "r", caughtUp, { epoch, sinceOffset: 10 });
  // Past the room's last: a store that lost its last commits hands their
  // offsets out again; the next messages must still come.
  const ahead = itemSink();
  subscribe(hub, "r", ahead, { epoch, sinceOffset: 13 });
  await settle();
  await publish("r", "m11");
  await settle();
  assert.deepEqual(resumed.got.map((m) => m.offset), [10, 8, 9, 10, 11]);
  assert.deepEqual(wrong.got.map((m) => m.offset), [10, 11]);
  assert.equal(wrong.got[0].epoch, epoch);
  assert.deepEqual(caughtUp.got.map((m) => m.offset), [10, 11]);
  assert.deepEqual(ahead.got.map((m) => m.text), ["welcome", "m11"]);
  store.close();
});

Deno.test("ChatHub replays thousands of messages to a paused subscriber within its queue, without holding up publishers or others", async () => {
  const { hub, store, publish } = testHub(
    { capacity: 8 },
    createMemoryStore({ size: 5000, ttlMs: 0 }),
  );
  const all = [];
  for (let i = 1; i <= 3000; i++) all.push(publish("r", `m${i}`));
  await Promise.all(all);
  const slow = itemSink(3); // pushes back after 3 items
  const { subscriber } = subscribe(hub, "r", slow, { history: 3000 });
  const fast = itemSink();
  subscribe(hub, "r", fast);
  await settle();
  // The slow one holds at most its queue; publishes and the fast one go on.
  assert.ok(subscriber.queued <= 8, `queued ${subscriber.queued}`);
  assert.equal(await publish("r", "live"), 3001);
  await settle();
  assert.deepEqual(fast.got.map((m) => m.offset), [3000, 3001]);
  // Drain it the way a stream does: resume after each push-back.
  while (slow.got.at(-1)?.offset !== 3001) {
    slow.room = slow.got.length + 100;
    subscriber.resume();
    await settle();
  }
  assert.deepEqual(
    slow.got.slice(1).map((m) => m.offset),
    Array.from({ length: 3001 }, (_, i) => i + 1),
  );
  assert.equal(subscriber.dropped, 0);
  store.close();
});

Deno.test("ChatHub's catch-up reads about what a sink that pushes back takes, not a whole page per drain", async () => {
  const memory = createMemoryStore({ size: 5000, ttlMs: 0 });
  let rowsRead = 0;
  const store: HistoryStore = {
    ...memory,
    read: async (room, after, limit, epoch) => {
      const rows = await memory.read(room, after, limit, epoch);
      rowsRead += rows.length;
      return rows;
    },
  };
  const { hub, publish } = testHub({ capacity: 256 }, store);
  const all = [];
  for (let i = 1; i <= 2000; i++) all.push(publish("r", `m${i}`));
  await Promise.all(all);
  const { epoch } = await store.position("r");
  // As an HTTP/2 stream whose window takes 16 messages: the 16th write
  // asks for a pause, and the stream drains in a later turn.
  const got: Item[] = [];
  const s: Sink<Item> = {
    write(item) {
      got.push(item);
      if (got.length % 16 !== 0) return true;
      setTimeout(() => subscriber.resume(), 0);
      return false;
    },
  };
  const { subscriber } = subscribe(hub, "r", s, { epoch, sinceOffset: 0 });
  for (let i = 0; i < 100 && got.at(-1)?.offset !== 2000; i++) await settle();
  assert.deepEqual(
    got.slice(1).map((m) => m.offset),
    Array.from({ length: 2000 }, (_, i) => i + 1),
  );
  assert.equal(subscriber.dropped, 0);
  // About twice what it took (the old whole page per drain read 16 times
  // as much), and the first page, read whole for a sink not yet seen.
  assert.ok(rowsRead <= 2 * 2000 + 256, `read ${rowsRead} rows`);
  // Caught up, it is live.
  assert.equal(await publish("r", "live"), 2001);
  await settle();
  assert.equal(got.at(-1)!.offset, 2001);
  memory.close();
});

for (const sync of [false, true]) {
  Deno.test(
    `ChatHub.publish() acknowledges nothing and delivers nothing when the store fails (${
      sync ? "appendSync throws" : "append rejects"
    })`,
    async () => {
      const memory = createMemoryStore({ size: 10, ttlMs: 0 });
      let broken = false;
      const store: HistoryStore = {
        ...memory,
        kind: "flaky",
        lastMessageId: 41,
        append: (entries, lastId) =>
          broken
            ? Promise.reject(new Error("disk full"))
            : memory.append(entries, lastId),
        appendSync: sync
          ? (entries, lastId) => {
            if (broken) throw new Error("disk full");
            return memory.appendSync!(entries, lastId);
          }
          : undefined,
      };
      const { hub, publish } = testHub({}, store);
      assert.equal(hub.nextMessageId(), "msg_42");
      const s = itemSink();
      subscribe(hub, "r", s);
      await settle();
      assert.equal(await publish("r", "a"), 1);
      broken = true;
      await assert.rejects(publish("r", "b"), (err: unknown) => {
        assert.ok(err instanceof ChatError);
        assert.equal(err.code, "unavailable");
        assert.match(err.message, /disk full/);
        return true;
      });
      broken = false;
      assert.equal(await publish("r", "c"), 2);
      assert.deepEqual(s.got.map((m) => m.text), ["welcome", "a", "c"]);
      memory.close();
    },
  );
}

Deno.test("ChatHub cuts off a live subscriber whose queue overflows under the disconnect policy", async () => {
  const { hub, store, publish } = testHub({
    capacity: 1,
    policy: "disconnect",
  });
  const stuck = subscribe(hub, "r", itemSink(1));
  await settle();
  await Promise.all([publish("r", "a"), publish("r", "b"), publish("r", "c")]);
  await settle();
  assert.ok(stuck.overflowed());
  assert.equal(hub.subscriberCount, 0);
  assert.equal(hub.stats.slowDisconnects, 1);
  store.close();
});

Deno.test("CommitQueue: a publish callback that throws is reported and the others still hear back", async () => {
  const store = createMemoryStore({ size: 10, ttlMs: 0 });
  const bugs: unknown[] = [];
  const hub = new ChatHub<number>({
    queueCapacity: 1,
    policy: "drop",
    store,
    item: (_body, offset) => offset,
    onInternal: (err) => bugs.push(err),
  });
  const heard: number[] = [];
  await new Promise<void>((resolve) => {
    hub.publish("r", new Uint8Array(1), () => {
      throw new Error("bug");
    });
    hub.publish("r", new Uint8Array(1), (_err, s) => heard.push(s!.offset));
    hub.publish("r", new Uint8Array(1), (_err, s) => {
      heard.push(s!.offset);
      resolve();
    });
  });
  assert.deepEqual(heard, [2, 3]);
  assert.equal((bugs[0] as Error).message, "bug");
  store.close();
});

Deno.test("RoomRegistry.queueDepth() sums the subscribers' queues and finds the fullest", () => {
  const rooms = new RoomRegistry<number>();
  assert.deepEqual(rooms.queueDepth(), { total: 0, max: 0 });
  const paused = (room: string) =>
    rooms.join(room, {
      subscriber: new Subscriber(sink(1), { capacity: 4, policy: "drop" }),
      live: true,
      delivered: 0,
      epoch: "e",
    });
  paused("x");
  paused("y");
  let offset = 0;
  const publish = (room: string, item: number) =>
    rooms.publish(room, ++offset, "e", () => item, new Uint8Array(0));
  publish("x", 1); // written; both sinks now push back
  publish("y", 1);
  for (let i = 0; i < 3; i++) publish("x", i);
  publish("y", 9);
  assert.deepEqual(rooms.queueDepth(), { total: 4, max: 3 });
});

Deno.test("ChatHub's message ids go on from the store's last id across every carry", () => {
  for (const last of [0, 8, 9, 99, 999, 1_999_999_999, 2 ** 31 - 2]) {
    const memory = createMemoryStore({ size: 10, ttlMs: 0 });
    const { hub } = testHub({}, { ...memory, lastMessageId: last });
    for (let k = 1; k <= 12; k++) {
      assert.equal(hub.nextMessageId(), `msg_${last + k}`);
    }
  }
});

Deno.test("ChatHub with a shared store: a subscriber whose catch-up read past this process's feed gets each later offset once", async () => {
  const memory = createMemoryStore({ size: 100, ttlMs: 0 });
  for (let i = 1; i <= 5; i++) {
    memory.appendSync!(
      [{ room: "r", body: text.encode(`m${i}`), timeMs: 0 }],
      i,
    );
  }
  const { epoch } = await memory.position("r");
  let deliver: (epoch: string, offset: number, body: Uint8Array) => void =
    () => {};
  // This process follows the room from offset 3: offsets 4 and 5 are
  // stored (by another core) but still on their way to it.
  const shared: HistoryStore = {
    ...memory,
    follow: (_room, d) => {
      deliver = d;
      return Promise.resolve({ epoch, offset: 3, stop: () => {} });
    },
  };
  const { hub } = testHub({}, shared);
  const resumed = itemSink();
  subscribe(hub, "r", resumed, { epoch, sinceOffset: 2 });
  await settle();
  for (const offset of [4, 5, 6, 6, 7]) {
    deliver(epoch, offset, text.encode(`m${offset}`));
  }
  await settle();
  // The catch-up read 3, 4 and 5 from the store and went live.
  assert.deepEqual(resumed.got.map((m) => m.offset), [3, 3, 4, 5, 6, 7]);
  memory.close();
});

/**
 * A store shared the way the Redis broker is, holding offsets 1..5 (`m1` ..
 * `m5`) of room "r" in its epoch: this process follows the room from `from`
 * (an epoch and an offset its feed has reached) and the test plays the feed
 * and moves the store on (`feed.store`).
 */
function laggingShared(
  from: { epoch?: string; offset: number },
  position?: HistoryStore["position"],
) {
  const memory = createMemoryStore({ size: 100, ttlMs: 0 });
  const epoch = "e2e2e2e2e2e2e2e2";
  const feed = {
    epoch,
    /**
     * The store's room: its epoch and last offset; it keeps m<first> ..
     * m<offset>.
     */
    store: { epoch, offset: 5, first: 1 },
    position: (): Promise<RoomPosition> =>
      Promise.resolve({ epoch: feed.store.epoch, offset: feed.store.offset }),
    deliver: (_e: string, _o: number, _b: Uint8Array) => {},
    send(epoch: string, offsets: number[]) {
      for (const o of offsets) feed.deliver(epoch, o, text.encode(`m${o}`));
    },
  };
  const shared: HistoryStore = {
    ...memory,
    position: position ?? feed.position,
    read(_room, after, limit, epoch) {
      const { epoch: now, offset, first } = feed.store;
      const rows = [];
      if (epoch === undefined || epoch === now) {
        const from = Math.max(after + 1, first);
        for (let o = from; o <= offset && rows.length < limit; o++) {
          rows.push({ offset: o, body: text.encode(`m${o}`) });
        }
      }
      return Promise.resolve(rows);
    },
    follow: (_room, d) => {
      feed.deliver = d;
      return Promise.resolve({
        epoch: from.epoch ?? epoch,
        offset: from.offset,
        stop: () => {},
      });
    },
  };
  return { memory, shared, feed };
}

Deno.test("ChatHub with a shared store: a resume past this process's lagging feed repeats nothing; a wrong offset is clamped to the store's last", async () => {
  const { memory, shared, feed } = laggingShared({ offset: 3 });
  const { hub } = testHub({}, shared);
  const live = itemSink();
  subscribe(hub, "r", live);
  await settle();
  const epoch = feed.epoch;
  // Saw up to 5 on another core; this core's feed is at 3.
  const resumed = itemSink();
  subscribe(hub, "r", resumed, { epoch, sinceOffset: 5 });
  const partly = itemSink();
  subscribe(hub, "r", partly, { epoch, sinceOffset: 4 });
  const wrong = itemSink();
  subscribe(hub, "r", wrong, { epoch, sinceOffset: 9 });
  const stale = itemSink();
  subscribe(hub, "r", stale, { epoch: "0123456789abcdef", sinceOffset: 5 });
  await settle();
  feed.send(epoch, [4, 5, 6, 7]);
  await settle();
  assert.deepEqual(live.got.map((m) => m.offset), [3, 4, 5, 6, 7]);
  assert.deepEqual(resumed.got.map((m) => m.offset), [3, 6, 7]);
  assert.deepEqual(partly.got.map((m) => m.offset), [3, 5, 6, 7]);
  assert.deepEqual(wrong.got.map((m) => m.text), ["welcome", "m6", "m7"]);
  assert.deepEqual(stale.got.map((m) => m.offset), [3, 4, 5, 6, 7]);
  memory.close();
});

/** What a sink got after its welcome: [epoch, offset] each. */
const seen = (s: ReturnType<typeof itemSink>) =>
  s.got.slice(1).map((m) => [m.epoch, m.offset]);

/** The store's room is in its own epoch; this process's feed is at `old` 3. */
const old = "e1e1e1e1e1e1e1e1";
async function behindByAnEpoch() {
  const { memory, shared, feed } = laggingShared({
    epoch: old,
    offset: 3,
  });
  const { hub } = testHub({}, shared);
  const live = itemSink();
  subscribe(hub, "r", live);
  await settle();
  return { memory, feed, hub, live };
}

Deno.test("ChatHub with a shared store: a resume in an epoch this process's feed has not reached waits for it and repeats nothing", async () => {
  const { memory, feed, hub, live } = await behindByAnEpoch();
  // Saw 1..5 of the room's new epoch on another core.
  const resumed = itemSink();
  subscribe(hub, "r", resumed, { epoch: feed.epoch, sinceOffset: 5 });
  // Resumes in the old epoch, which the store no longer has: its catch-up
  // must not read the new epoch's offsets as the old one's.
  const behind = itemSink();
  subscribe(hub, "r", behind, { epoch: old, sinceOffset: 0 });
  await settle();
  feed.send(old, [4]);
  feed.send(feed.epoch, [1, 2, 3, 4, 5, 6]);
  await settle();
  assert.deepEqual(
    live.got.map((m) => [m.epoch === old ? "old" : "new", m.offset]),
    [
      ["old", 3],
      ["old", 4],
      ...[1, 2, 3, 4, 5, 6].map((o) => ["new", o]),
    ],
  );
  assert.deepEqual(resumed.got.map((m) => m.text), ["welcome", "m6"]);
  assert.equal(resumed.got[1].epoch, feed.epoch);
  assert.deepEqual(behind.got, live.got);
  memory.close();
});

Deno.test("ChatHub with a shared store: a member waiting for an epoch that went by unseen turns live in the next one; one resuming in an epoch the store left skips what it has", async () => {
  const { memory, feed, hub, live } = await behindByAnEpoch();
  const next = "e3e3e3e3e3e3e3e3";
  // Waits for the store's epoch, which ends before this process sees it.
  const waiting = itemSink();
  subscribe(hub, "r", waiting, { epoch: feed.epoch, sinceOffset: 5 });
  // Saw 1..5 of the old epoch elsewhere; the store has left it.
  const left = itemSink();
  subscribe(hub, "r", left, { epoch: old, sinceOffset: 5 });
  await settle();
  feed.send(old, [4, 5, 6]);
  feed.store = { epoch: next, offset: 2, first: 1 };
  feed.send(next, [1, 2]);
  await settle();
  assert.deepEqual(seen(live), [
    [old, 4],
    [old, 5],
    [old, 6],
    [next, 1],
    [next, 2],
  ]);
  assert.deepEqual(seen(waiting), [[next, 1], [next, 2]]);
  assert.deepEqual(seen(left), [[old, 6], [next, 1], [next, 2]]);
  memory.close();
});

Deno.test("ChatHub with a shared store: a sink that drains while the store is asked where to resume starts no catch-up from 0", async () => {
  let answer: () => void = () => {};
  const { memory, shared, feed } = laggingShared(
    { offset: 3 },
    () => new Promise((resolve) => answer = () => resolve(feed.position())),
  );
  const { hub } = testHub({}, shared);
  const live = itemSink();
  subscribe(hub, "r", live);
  await settle();
  const slow = itemSink(1); // pushes back on the welcome
  const sub = subscribe(hub, "r", slow, { epoch: feed.epoch, sinceOffset: 5 });
  await settle();
  slow.room = Infinity;
  sub.subscriber.resume();
  await settle();
  answer();
  await settle();
  feed.send(feed.epoch, [4, 5, 6]);
  await settle();
  assert.deepEqual(slow.got.map((m) => m.offset), [3, 6]);
  memory.close();
});

Deno.test("ChatHub with a shared store: what the feed brings while the store is asked is read back, for a client in an epoch gone and one ahead", async () => {
  const asked: (() => void)[] = [];
  const { memory, shared, feed } = laggingShared(
    { offset: 3 },
    () => new Promise((resolve) => asked.push(() => resolve(feed.position()))),
  );
  const { hub } = testHub({}, shared);
  const live = itemSink();
  subscribe(hub, "r", live);
  await settle();
  const stale = itemSink();
  subscribe(hub, "r", stale, { epoch: "0123456789abcdef", sinceOffset: 5 });
  const ahead = itemSink();
  subscribe(hub, "r", ahead, { epoch: feed.epoch, sinceOffset: 4 });
  await settle();
  feed.store.offset = 6;
  feed.send(feed.epoch, [4, 5, 6]);
  assert.equal(asked.length, 2);
  for (const answer of asked) answer();
  await settle();
  feed.store.offset = 7;
  feed.send(feed.epoch, [7]);
  await settle();
  assert.deepEqual(live.got.map((m) => m.offset), [3, 4, 5, 6, 7]);
  assert.deepEqual(stale.got.map((m) => m.offset), [3, 4, 5, 6, 7]);
  assert.deepEqual(ahead.got.map((m) => m.offset), [3, 5, 6, 7]);
  memory.close();
});

Deno.test("ChatHub with a shared store: a member waiting for an epoch while the feed is two behind is asked again, and repeats nothing", async () => {
  const { memory, feed, hub, live } = await behindByAnEpoch();
  const between = "e1b1e1b1e1b1e1b1";
  const waiting = itemSink();
  subscribe(hub, "r", waiting, { epoch: feed.epoch, sinceOffset: 5 });
  await settle();
  feed.send(old, [4]);
  feed.send(between, [1, 2]);
  await settle();
  feed.store.offset = 6;
  feed.send(feed.epoch, [1, 2, 3, 4, 5, 6]);
  await settle();
  assert.deepEqual(seen(live).length, 9);
  assert.deepEqual(seen(waiting), [[feed.epoch, 6]]);
  memory.close();
});

Deno.test("ChatHub with a shared store: history trimmed past what this process's feed brought is not skipped; a gap the feed could not fill is counted lost", async () => {
  const { memory, shared, feed } = laggingShared({ offset: 3 });
  const { hub } = testHub({}, shared);
  const live = itemSink();
  const liveSub = subscribe(hub, "r", live);
  await settle();
  // A burst elsewhere: the store keeps only 8..10, the feed is at 3.
  feed.store = { epoch: feed.epoch, offset: 10, first: 8 };
  const recent = itemSink();
  subscribe(hub, "r", recent, { history: 3 });
  const resumed = itemSink();
  subscribe(hub, "r", resumed, { epoch: feed.epoch, sinceOffset: 1 });
  await settle();
  feed.send(feed.epoch, [4, 5, 6, 7, 8, 9, 10, 11]);
  await settle();
  const all = [3, 4, 5, 6, 7, 8, 9, 10, 11];
  assert.deepEqual(recent.got.map((m) => m.offset), all);
  assert.deepEqual(resumed.got.map((m) => m.offset), all);
  // PUB/SUB lost 12 and 13 and the stream no longer had them.
  feed.send(feed.epoch, [14]);
  await settle();
  assert.deepEqual(live.got.map((m) => m.offset).slice(-2), [11, 14]);
  assert.equal(liveSub.subscriber.dropped, 2);
  assert.equal(hub.stats.dropped, 6); // 2 for each of the three
  memory.close();
});

Deno.test("ChatHub with a shared store: a gap the feed could not fill, met by a live member too slow for the message after it, is counted lost once", async () => {
  const { memory, shared, feed } = laggingShared({ offset: 3 });
  const { hub } = testHub({ capacity: 2 }, shared);
  const slow = itemSink(2); // the welcome, then 4, and it pushes back
  const sub = subscribe(hub, "r", slow);
  await settle();
  feed.send(feed.epoch, [4, 5, 6]); // 5 and 6 fill its queue
  // The store no longer has 7; the feed brings 8 while the queue is full.
  feed.store = { epoch: feed.epoch, offset: 10, first: 8 };
  feed.send(feed.epoch, [8, 9, 10]);
  assert.equal(hub.stats.fellBehind, 1);
  slow.room = Infinity;
  sub.subscriber.resume();
  await settle();
  assert.deepEqual(slow.got.slice(1).map((m) => m.offset), [4, 5, 6, 8, 9, 10]);
  assert.equal(sub.subscriber.dropped, 1);
  assert.equal(hub.stats.dropped, 1);
  memory.close();
});

Deno.test("ChatHub with a shared store: a member that waited for an epoch which ended unseen is told what it lost", async () => {
  const { memory, feed, hub } = await behindByAnEpoch();
  const next = "e3e3e3e3e3e3e3e3";
  feed.store = { epoch: feed.epoch, offset: 7, first: 1 };
  const waiting = itemSink();
  const sub = subscribe(hub, "r", waiting, {
    epoch: feed.epoch,
    sinceOffset: 5,
  });
  await settle();
  // Its epoch's 6 and 7 never come: the feed goes from old to next.
  feed.store = { epoch: next, offset: 1, first: 1 };
  feed.send(next, [1]);
  await settle();
  assert.deepEqual(seen(waiting), [[next, 1]]);
  assert.equal(sub.subscriber.dropped, 2);
  memory.close();
});

Deno.test("ChatHub with a shared store: under the disconnect policy a gap the feed could not fill ends the live subscriber's stream, and is not counted delivered", async () => {
  const { memory, shared, feed } = laggingShared({ offset: 3 });
  const { hub } = testHub({ policy: "disconnect" }, shared);
  const live = itemSink();
  const sub = subscribe(hub, "r", live);
  await settle();
  feed.send(feed.epoch, [4, 6]);
  await settle();
  assert.deepEqual(live.got.map((m) => m.offset), [3, 4]);
  assert.equal(sub.overflowed(), true);
  assert.equal(hub.stats.deliveries, 1);
  assert.equal(hub.subscriberCount, 0);
  memory.close();
});

Deno.test("ChatHub: a sink that pushes back on the welcome and drains in the same turn still gets its replay", async () => {
  const { hub, store, publish } = testHub();
  for (let i = 1; i <= 10; i++) await publish("r", `m${i}`);
  subscribe(hub, "r", itemSink()); // the room is known: joins start at once
  await settle();
  const s = itemSink(1); // pushes back on the welcome
  const sub = subscribe(hub, "r", s, { history: 5 });
  s.room = Infinity;
  sub.subscriber.resume(); // drained before the catch-up's turn ended
  await settle();
  assert.deepEqual(s.got.map((m) => m.offset), [10, 6, 7, 8, 9, 10]);
  store.close();
});

Deno.test("ChatHub.nextMessageId() counts within the store's id block, asks for the next past its mark, moves to it at the end, and is UNAVAILABLE while it has not come", () => {
  const memory = createMemoryStore({ size: 10, ttlMs: 0 });
  const blocks: number[] = [];
  let end = 103;
  let asked = 0;
  const store = {
    ...memory,
    lastMessageId: 100,
    idBlocks: {
      get end() {
        return end;
      },
      get askAfter() {
        return end - 2;
      },
      ask: () => asked++,
      next() {
        const b = blocks.shift();
        if (b === undefined) return undefined;
        end = b + 3;
        return b;
      },
    },
  };
  const { hub } = testHub({}, store);
  assert.equal(hub.nextMessageId(), "msg_101");
  assert.equal(asked, 0);
  // Past 101 (end - 2): the next block is asked for, once.
  assert.deepEqual(
    [hub.nextMessageId(), hub.nextMessageId()],
    ["msg_102", "msg_103"],
  );
  assert.equal(asked, 1);
  for (let i = 0; i < 2; i++) {
    assert.throws(() => hub.nextMessageId(), (err: ChatError) => {
      assert.equal(err.code, "unavailable");
      assert.match(err.message, /next block/);
      return true;
    });
  }
  blocks.push(5000, 9);
  assert.deepEqual(
    Array.from({ length: 6 }, () => hub.nextMessageId()),
    ["msg_5001", "msg_5002", "msg_5003", "msg_10", "msg_11", "msg_12"],
  );
  // Once per block: 101, 5001 and 10 were each past their block's mark.
  assert.equal(asked, 3);
});

Deno.test("Subscriber with maxBytes: a paused subscriber queues up to that many bytes (a first larger item alone), then the policy applies; resume gives the bytes back", () => {
  const s = sink<Uint8Array>(1);
  let drops = 0;
  const sub = new Subscriber<Uint8Array>(s, {
    capacity: 100,
    policy: "drop",
    maxBytes: 10,
    bytes: (item) => item.byteLength,
    onDrop: () => drops++,
  });
  const item = (n: number) => new Uint8Array(n).fill(n);
  sub.deliver(item(1)); // taken, and the sink asks for a pause
  sub.deliver(item(4));
  sub.deliver(item(6)); // 10 bytes queued: full
  sub.deliver(item(1));
  assert.equal(sub.queued, 2);
  assert.equal(drops, 1);
  s.room = Infinity;
  sub.resume();
  assert.deepEqual(s.got.map((i) => i.byteLength), [1, 4, 6]);
  // Given back: a first item larger than the bound still waits alone.
  s.room = 0;
  sub.deliver(item(1));
  sub.deliver(item(50));
  sub.deliver(item(1));
  assert.equal(sub.queued, 1);
  assert.equal(drops, 2);
  const closing = new Subscriber<Uint8Array>(sink<Uint8Array>(0), {
    capacity: 100,
    policy: "disconnect",
    maxBytes: 10,
    bytes: (item) => item.byteLength,
    onOverflow: () => drops = -1,
  });
  closing.deliver(item(1));
  closing.deliver(item(8));
  closing.deliver(item(8));
  assert.equal(drops, -1);
  assert.ok(closing.closed);
});
