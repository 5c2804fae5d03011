import assert from "node:assert/strict";
import { ChatHub } from "./hub.ts";
import { RingBuffer } from "./ring_buffer.ts";
import { RoomRegistry } from "./room_registry.ts";
import { type Sink, Subscriber } from "./subscriber.ts";

/** A sink that accepts `room` items, then pushes back until drained. */
function sink(room = Infinity): Sink<number> & { got: number[]; room: number } {
  const s = {
    got: [] as number[],
    room,
    write(item: number) {
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

Deno.test("RoomRegistry.publish() reaches only the room; leave() is idempotent and drops empty rooms", () => {
  const rooms = new RoomRegistry<number>();
  const a = sink(), b = sink(), c = sink();
  const leaveA = rooms.join(
    "x",
    new Subscriber(a, { capacity: 1, policy: "drop" }),
  );
  rooms.join("x", new Subscriber(b, { capacity: 1, policy: "drop" }));
  const leaveC = rooms.join(
    "y",
    new Subscriber(c, { capacity: 1, policy: "drop" }),
  );
  assert.equal(rooms.publish("x", 7), 2);
  assert.deepEqual([a.got, b.got, c.got], [[7], [7], []]);
  leaveA();
  leaveA();
  assert.equal(rooms.subscriberCount, 2);
  leaveC();
  assert.equal(rooms.roomCount, 1);
  assert.equal(rooms.publish("y", 1), 0);
});

Deno.test("ChatHub.publish() hands every subscriber the same object and never waits for a slow one", async () => {
  const hub = new ChatHub<{ n: number }>({
    queueCapacity: 1,
    policy: "disconnect",
  });
  const seen: { n: number }[] = [];
  let overflowed = false;
  hub.subscribe("r", { write: (m) => (seen.push(m), true) }, () => {});
  hub.subscribe("r", { write: () => false }, () => (overflowed = true));
  const item = { n: 1 };
  for (let i = 0; i < 3; i++) hub.publish("r", item);
  assert.equal(seen.length, 3);
  assert.ok(seen.every((m) => m === item));
  await Promise.resolve(); // onOverflow is deferred out of the publish loop
  assert.ok(overflowed);
  assert.equal(hub.subscriberCount, 1);
  assert.equal(hub.stats.slowDisconnects, 1);
  assert.equal(hub.nextMessageId(), "msg_1");
  assert.equal(hub.nextMessageId(), "msg_2");
});

Deno.test("ChatHub.publishWith() builds the item only for a room with subscribers", () => {
  const hub = new ChatHub<number>({ queueCapacity: 1, policy: "drop" });
  let built = 0;
  const make = () => ++built;
  assert.equal(hub.publishWith("empty", make), 0);
  assert.equal(built, 0);
  const s = sink();
  hub.subscribe("r", s, () => {});
  assert.equal(hub.publishWith("r", make), 1);
  assert.deepEqual(s.got, [1]);
  assert.equal(hub.stats.messagesPublished, 2);
  assert.equal(hub.stats.deliveries, 1);
});

Deno.test("RoomRegistry.queueDepth() sums the subscribers' queues and finds the fullest", () => {
  const rooms = new RoomRegistry<number>();
  assert.deepEqual(rooms.queueDepth(), { total: 0, max: 0 });
  const paused = (room: string) =>
    rooms.join(room, new Subscriber(sink(1), { capacity: 4, policy: "drop" }));
  paused("x");
  paused("y");
  rooms.publish("x", 1); // written; both sinks now push back
  rooms.publish("y", 1);
  for (let i = 0; i < 3; i++) rooms.publish("x", i);
  rooms.publish("y", 9);
  assert.deepEqual(rooms.queueDepth(), { total: 4, max: 3 });
});
