import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { RetainedBudget, RetainedRoom } from "./retained_room.ts";

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);

Deno.test("RetainedRoom.push() copies bodies of any size into chunks and reads them back exactly", () => {
  const room = new RetainedRoom("e", 0);
  const limits = { size: 50, ttlMs: 0 };
  const sizes = [0, 1, 100, 255, 256, 3000, 70_000, 5, 200_000, 17];
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 40; i++) {
    // A view into a larger buffer: only its own bytes are kept.
    const big = bytes(sizes[i % sizes.length] + 8, i + 1);
    const body = big.subarray(4, big.length - 4);
    sent.push(body.slice());
    room.push(i + 1, body, 0, limits);
    big.fill(0); // the caller reuses its buffer
  }
  const read = room.read(0, 100, -Infinity);
  assert.deepEqual(read.map((m) => m.offset), sent.map((_, i) => i + 1));
  read.forEach((m, i) => assert.deepEqual(m.body, sent[i], `offset ${i + 1}`));
});

Deno.test("RetainedRoom.view() keeps showing the same messages while the room goes on", () => {
  const room = new RetainedRoom("e", 0);
  const limits = { size: 10, ttlMs: 0 };
  for (let i = 1; i <= 10; i++) room.push(i, bytes(40, i), 0, limits);
  const view = room.view();
  // Many more pushes: trimming, copying the array, new chunks.
  for (let i = 11; i <= 500; i++) room.push(i, bytes(40, i % 256), 0, limits);
  const seen = [];
  for (let i = view.start; i < view.end; i++) {
    seen.push(view.offsetAt(i));
    assert.deepEqual(view.bodyAt(i), bytes(40, view.offsetAt(i)));
  }
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(
    room.read(0, 100, -Infinity).map((m) => m.offset),
    Array.from({ length: 10 }, (_, i) => 491 + i),
  );
});

Deno.test("RetainedRoom: a room's only message is a copy of its own; the second moves it into the chunk they share; views taken before stay valid; emptied, the next message is alone again", () => {
  const room = new RetainedRoom("e", 0);
  const limits = { size: 3, ttlMs: 1000 };
  const sent = bytes(80, 7);
  room.push(1, sent.subarray(0, 80), 10, limits);
  sent.fill(0); // the caller reuses its buffer
  const one = room.view();
  // No 256-byte chunk for one message: the copy is exactly its size.
  assert.equal(one.chunkAt(0).length, 80);
  assert.equal(room.heldBytes(), 80);
  assert.deepEqual(room.read(0, 10, -Infinity)[0].body, bytes(80, 7));

  room.push(2, bytes(30, 8), 20, limits);
  const two = room.view();
  assert.equal(two.chunkAt(0), two.chunkAt(1), "one chunk for both");
  assert.ok(two.chunkAt(0).length >= 110);
  assert.equal(room.heldBytes(), two.chunkAt(0).length);
  assert.deepEqual(two.bodyAt(0), bytes(80, 7));
  assert.deepEqual(two.bodyAt(1), bytes(30, 8));
  // The earlier view still shows the first message as it was.
  assert.equal(one.end - one.start, 1);
  assert.equal(one.offsetAt(0), 1);
  assert.equal(one.timeAt(0), 10);
  assert.deepEqual(one.bodyAt(0), bytes(80, 7));
  for (let i = 3; i <= 10; i++) room.push(i, bytes(30, i), 20 + i, limits);
  assert.deepEqual(room.read(0, 10, -Infinity).map((m) => m.offset), [
    8,
    9,
    10,
  ]);
  assert.equal(room.bytes, 90);

  // The TTL empties it; its next message is alone again.
  room.trim(limits, 5000);
  assert.equal(room.size, 0);
  assert.equal(room.heldBytes(), 0);
  room.push(11, bytes(20_000, 3), 5000, limits);
  assert.equal(room.view().chunkAt(0).length, 20_000);
  room.push(12, bytes(5, 4), 5001, limits);
  const v = room.view();
  // A large first body keeps its own chunk; the small one starts a chunk.
  assert.equal(v.chunkAt(0).length, 20_000);
  assert.notEqual(v.chunkAt(1), v.chunkAt(0));
  assert.deepEqual(room.read(10, 10, -Infinity).map((m) => m.body.length), [
    20_000,
    5,
  ]);
});

Deno.test("RetainedRoom.push() keeps chunks to about what a small room retains, not 64 KiB", () => {
  const room = new RetainedRoom("e", 0);
  const limits = { size: 5, ttlMs: 0 };
  for (let i = 1; i <= 2000; i++) room.push(i, bytes(100, i % 256), 0, limits);
  const view = room.view();
  const chunks = new Set<Uint8Array>();
  for (let i = view.start; i < view.end; i++) chunks.add(view.chunkAt(i));
  const held = [...chunks].reduce((n, c) => n + c.length, 0);
  // 500 bytes retained: at most a few 256-byte chunks, never a 64 KiB one.
  assert.ok(held <= 1024, `${held} bytes of chunks for 500 retained`);
  const big = new RetainedRoom("e", 0);
  for (let i = 1; i <= 2000; i++) {
    big.push(i, bytes(100, 1), 0, { size: 1000, ttlMs: 0, bytes: 2000 });
  }
  const v = big.view();
  assert.ok(v.chunkAt(v.end - 1).length <= 1024);
  assert.equal(big.size, 20);
});

Deno.test("RetainedBudget keeps rooms in order of their last write, also across writes in a row and emptied rooms", () => {
  const budget = new RetainedBudget();
  const limits = { size: 1, ttlMs: 0 };
  const a = new RetainedRoom("e", 0, budget);
  const b = new RetainedRoom("e", 0, budget);
  const order = () => [...budget.rooms()].map((r) => r === a ? "a" : "b");
  a.push(1, bytes(1, 1), 0, limits);
  a.push(2, bytes(1, 2), 0, limits);
  assert.deepEqual(order(), ["a"]);
  b.push(1, bytes(1, 1), 0, limits);
  assert.deepEqual(order(), ["a", "b"]);
  a.push(3, bytes(1, 3), 0, limits);
  a.push(4, bytes(1, 4), 0, limits);
  assert.deepEqual(order(), ["b", "a"]);
  budget.emptied(a);
  assert.deepEqual(order(), ["b"]);
  // The last room written, once emptied, is put back by its next write.
  a.push(5, bytes(1, 5), 0, limits);
  assert.deepEqual(order(), ["b", "a"]);
});

Deno.test("RetainedBudget keeps rooms in the order of their last write through repeated writes, emptied and refilled rooms", () => {
  const budget = new RetainedBudget(1000);
  const limits = { size: 100, ttlMs: 0 };
  const rooms = ["a", "b", "c"].map((e) => new RetainedRoom(e, 0, budget));
  const [a, b, c] = rooms;
  const order = () => [...budget.rooms()].map((r) => r.epoch).join("");
  const body = bytes(10, 1);
  a.push(1, body, 0, limits);
  a.push(2, body, 0, limits); // already the last: stays last
  b.push(1, body, 0, limits);
  b.push(2, body, 0, limits);
  a.push(3, body, 0, limits);
  assert.equal(order(), "ba");
  a.release(); // the last room empties: the next write to it makes it last again
  assert.equal(order(), "b");
  c.push(1, body, 0, limits);
  a.push(4, body, 0, limits);
  a.push(5, body, 0, limits);
  b.push(3, body, 0, limits);
  assert.equal(order(), "cab");
  b.release();
  b.push(4, body, 0, limits);
  assert.equal(order(), "cab");
  // Over the bound, the least recently written room (a) loses its oldest
  // first, then leaves the order once empty.
  c.push(2, bytes(980, 2), 0, limits);
  assert.equal(order(), "bc");
  assert.equal(a.size, 0);
  assert.equal(budget.total, 1000);
});

Deno.test("RetainedBudget keeps the order of last writes through 20,000 random writes and releases across 50 rooms", () => {
  const budget = new RetainedBudget();
  const limits = { size: 4, ttlMs: 0 };
  const rooms = Array.from(
    { length: 50 },
    (_, i) => new RetainedRoom(String(i), 0, budget),
  );
  const offsets = rooms.map(() => 0);
  const names = (rs: Iterable<RetainedRoom>) => [...rs].map((r) => r.epoch);
  // The model: rooms holding messages, least recently written first.
  let model: RetainedRoom[] = [];
  let seed = 7;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let step = 0; step < 20_000; step++) {
    const i = random(rooms.length);
    const r = rooms[i];
    if (random(10) === 0) {
      r.release();
      model = model.filter((m) => m !== r);
    } else {
      r.push(++offsets[i], bytes(3, i), 0, limits);
      model = model.filter((m) => m !== r);
      model.push(r);
    }
    if (step % 97 === 0) assert.deepEqual(names(budget.rooms()), names(model));
  }
  assert.deepEqual(names(budget.rooms()), names(model));
  let total = 0;
  for (const r of rooms) total += r.size * 3;
  assert.equal(budget.total, total);
});

Deno.test("RetainedRoom agrees with a plain model through random pushes under each kind of limit, and its views stay as taken", () => {
  for (
    const [limits, pushes] of [
      [{ size: 300, ttlMs: 5_000, bytes: 20_000 }, 30_000],
      // One message kept: each push replaces the room's only row.
      [{ size: 1, ttlMs: 0 }, 5_000],
      [{ size: 2, ttlMs: 40 }, 5_000],
      // A byte bound that often leaves a single message.
      [{ size: 50, ttlMs: 0, bytes: 250 }, 5_000],
    ] as const
  ) modelRun(limits, pushes);
});

function modelRun(
  limits: { size: number; ttlMs: number; bytes?: number },
  pushes: number,
): void {
  let seed = 11;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const budget = new RetainedBudget();
  const room = new RetainedRoom("e", 0, budget);
  // The model: what the limits keep, applied the slow way.
  let model: { offset: number; timeMs: number; body: Uint8Array }[] = [];
  const views: {
    view: ReturnType<RetainedRoom["view"]>;
    rows: typeof model;
  }[] = [];
  let now = 0;
  for (let offset = 1; offset <= pushes; offset++) {
    now += random(3);
    const body = bytes(random(200), offset % 256);
    room.push(offset, body, now, limits);
    model.push({ offset, timeMs: now, body });
    if (model.length > limits.size) model = model.slice(-limits.size);
    let total = model.reduce((n, m) => n + m.body.length, 0);
    while (
      limits.bytes !== undefined && total > limits.bytes && model.length > 1
    ) {
      total -= model[0].body.length;
      model = model.slice(1);
    }
    if (limits.ttlMs > 0) {
      model = model.filter((m) => m.timeMs >= now - limits.ttlMs);
    }
    assert.equal(room.size, model.length, `size at ${offset}`);
    const kept = model.reduce((n, m) => n + m.body.length, 0);
    assert.equal(room.bytes, kept, `bytes at ${offset}`);
    assert.equal(budget.total, kept, `budget at ${offset}`);
    // A room that keeps one message holds exactly its body (no chunk).
    if (limits.size === 1) assert.equal(room.heldBytes(), kept);
    if (offset % 997 === 0 || pushes - offset < 3) {
      const after = model.length > 0 ? model[0].offset - 1 + random(50) : 0;
      const got = room.read(after, 100, -Infinity);
      const want = model.filter((m) => m.offset > after).slice(0, 100);
      assert.deepEqual(got.map((m) => m.offset), want.map((m) => m.offset));
      got.forEach((m, i) => assert.deepEqual(m.body, want[i].body));
      views.push({ view: room.view(), rows: [...model] });
    }
  }
  // Every view still shows what it showed when taken.
  for (const { view, rows } of views) {
    assert.equal(view.end - view.start, rows.length);
    rows.forEach((m, i) => {
      assert.equal(view.offsetAt(view.start + i), m.offset);
      assert.equal(view.timeAt(view.start + i), m.timeMs);
      assert.deepEqual(view.bodyAt(view.start + i), m.body);
    });
  }
}

Deno.test("RetainedRoom emptied by the store-wide budget keeps no chunk reachable, and earlier views still read", () => {
  const budget = new RetainedBudget(1_000_000);
  const limits = { size: 1000, ttlMs: 0 };
  const idle = new RetainedRoom("idle", 0, budget);
  for (let i = 1; i <= 12; i++) idle.push(i, bytes(60_000, i), 0, limits);
  const view = idle.view();
  assert.ok(idle.heldBytes() >= 12 * 60_000);
  // Another room's writes push the idle one out entirely.
  const busy = new RetainedRoom("busy", 0, budget);
  for (let i = 1; i <= 40; i++) busy.push(i, bytes(50_000, 1), 0, limits);
  assert.equal(idle.size, 0);
  assert.equal(idle.bytes, 0);
  assert.equal(idle.heldBytes(), 0);
  assert.ok(busy.heldBytes() <= 2 * busy.bytes, `${busy.heldBytes()}`);
  assert.equal(budget.total, busy.bytes);
  // The view taken before still has its own rows.
  assert.equal(view.end - view.start, 12);
  assert.deepEqual(view.bodyAt(view.end - 1), bytes(60_000, 12));
  // And the room takes messages again, offsets going on.
  idle.push(13, bytes(10, 13), 0, limits);
  assert.deepEqual(idle.read(0, 10, -Infinity).map((m) => m.offset), [13]);
});

Deno.test("RetainedRoom lets go of dropped rows' chunks once they outweigh what it keeps", () => {
  const limits = { size: 1000, ttlMs: 0 };
  const room = new RetainedRoom("e", 0);
  let offset = 0;
  for (let i = 0; i < 10; i++) room.push(++offset, bytes(60_000, i), 0, limits);
  for (let i = 0; i < 990; i++) room.push(++offset, bytes(10, 1), 0, limits);
  assert.ok(room.heldBytes() >= 600_000);
  // Ten more push the ten large ones out by the size limit: 10 rows are
  // far from half the columns, but their chunks are 60 times what is kept.
  for (let i = 0; i < 10; i++) room.push(++offset, bytes(10, 2), 0, limits);
  assert.equal(room.bytes, 10_000);
  // What is kept, in at most two 64 KiB chunks: none of the 600 KB.
  assert.ok(room.heldBytes() <= 2 * 65_536, `${room.heldBytes()} held`);
});

Deno.test("RetainedRoom and RetainedBudget agree with a model under a store-wide bound, holding at most about twice what they keep", () => {
  for (const start of [3, 4]) {
    let seed = start;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const limits = { size: 60, ttlMs: 0, bytes: 400_000 };
    const max = 600_000;
    const budget = new RetainedBudget(max);
    const n = 12;
    const rooms = Array.from(
      { length: n },
      (_, i) => new RetainedRoom(String(i), 0, budget),
    );
    const model: Uint8Array[][] = rooms.map(() => []);
    const first = rooms.map(() => 1); // offset of model[i][0]
    const last = rooms.map(() => 0);
    let order: number[] = [];
    const sum = (ms: Uint8Array[]) => ms.reduce((k, b) => k + b.length, 0);
    for (let step = 0; step < 6000; step++) {
      const i = random(n);
      // Mostly small bodies, some just over half a chunk (each alone in a
      // 64 KiB chunk if shared), some up to 70 KB: chunks of every size.
      const size = random(8) === 0
        ? random(70_000)
        : random(8) === 0
        ? 32_769 + random(100)
        : random(300);
      const body = bytes(size, step % 256);
      rooms[i].push(++last[i], body, 0, limits);
      model[i].push(body);
      order = order.filter((x) => x !== i);
      order.push(i);
      const drop = (k: number) => {
        model[k].shift();
        first[k]++;
      };
      while (model[i].length > limits.size) drop(i);
      while (sum(model[i]) > limits.bytes && model[i].length > 1) drop(i);
      while (model.reduce((k, ms) => k + sum(ms), 0) > max) {
        const f = order[0];
        if (f === i && model[i].length <= 1) break;
        drop(f);
        if (model[f].length === 0) order.shift();
      }
      if (step % 50 === 0 || step === 5999) {
        assert.deepEqual(
          [...budget.rooms()].map((r) => Number(r.epoch)),
          order,
        );
        for (let k = 0; k < n; k++) {
          const got = rooms[k].read(0, 1000, -Infinity);
          assert.deepEqual(
            got.map((m) => m.offset),
            model[k].map((_, j) => first[k] + j),
            `room ${k} at step ${step}`,
          );
          got.forEach((m, j) => assert.deepEqual(m.body, model[k][j]));
          // Dead chunks up to the kept bytes and 64 KiB, the chunk being
          // filled, and the part of each kept chunk not yet used.
          const held = rooms[k].heldBytes();
          const kept = rooms[k].bytes;
          assert.ok(
            held <= 2 * kept + 3 * 65_536 + 70_000,
            `room ${k} holds ${held} for ${kept} kept, step ${step}`,
          );
        }
      }
    }
  }
});

Deno.test("RetainedRoom holds about twice what it keeps even with bodies just over half a chunk", () => {
  for (
    const limits of [{ size: 40, ttlMs: 0 }, {
      size: 1000,
      ttlMs: 0,
      bytes: 400_000,
    }]
  ) {
    const room = new RetainedRoom("e", 0, new RetainedBudget(600_000));
    let worst = 0;
    for (let i = 1; i <= 400; i++) {
      room.push(i, bytes(32_769, i % 256), 0, limits);
      worst = Math.max(worst, room.heldBytes() / room.bytes);
      // Small ones in between, sharing chunks.
      if (i % 3 === 0) room.push(++i, bytes(100, 1), 0, limits);
    }
    assert.ok(worst <= 2, `held ${worst.toFixed(2)}x what it kept`);
    const read = room.read(0, 1000, -Infinity);
    assert.equal(read.length, room.size);
    assert.deepEqual(
      read.at(-1)!.body,
      room.view().bodyAt(room.view().end - 1),
    );
  }
});

Deno.test("RetainedRoom with size 0 keeps nothing, holds nothing, and stays out of the budget", () => {
  const budget = new RetainedBudget(1000);
  const room = new RetainedRoom("e", 0, budget);
  for (let i = 1; i <= 100; i++) {
    room.push(i, bytes(50, i), 0, { size: 0, ttlMs: 0 });
  }
  assert.equal(room.size, 0);
  assert.equal(room.heldBytes(), 0);
  assert.equal(budget.total, 0);
  assert.deepEqual([...budget.rooms()], []);
  assert.deepEqual(room.read(0, 10, -Infinity), []);
});

Deno.test("RetainedRoom emptied by its TTL or released and filled again: views from before and after each read as taken", () => {
  const limits = { size: 100, ttlMs: 1000 };
  const budget = new RetainedBudget();
  const room = new RetainedRoom("e", 0, budget);
  const views: { view: ReturnType<RetainedRoom["view"]>; offsets: number[] }[] =
    [];
  let offset = 0;
  let now = 0;
  const fill = (n: number) => {
    const offsets = [];
    for (let k = 0; k < n; k++) {
      room.push(++offset, bytes(300, offset % 256), now, limits);
      offsets.push(offset);
    }
    views.push({ view: room.view(), offsets });
  };
  fill(30);
  now += 5000;
  room.trim(limits, now); // all expired
  assert.equal(room.size, 0);
  assert.equal(room.heldBytes(), 0);
  fill(10);
  room.release();
  assert.equal(room.heldBytes(), 0);
  assert.equal(budget.total, 0);
  fill(5);
  assert.deepEqual(
    room.read(0, 100, -Infinity).map((m) => m.offset),
    views.at(-1)!.offsets,
  );
  for (const { view, offsets } of views) {
    assert.equal(view.end - view.start, offsets.length);
    offsets.forEach((o, k) => {
      assert.equal(view.offsetAt(view.start + k), o);
      assert.deepEqual(view.bodyAt(view.start + k), bytes(300, o % 256));
    });
  }
});

Deno.test("RetainedRoom copies a large body given as a Node Buffer view: the caller may reuse its buffer", () => {
  const room = new RetainedRoom("e", 0);
  const limits = { size: 10, ttlMs: 0 };
  const received = Buffer.alloc(100_000, 7);
  room.push(1, received.subarray(10, 40_010), 0, limits); // a body of its own chunk
  room.push(2, received.subarray(50_000, 50_100), 0, limits); // a shared chunk
  received.fill(0);
  const [a, b] = room.read(0, 10, -Infinity);
  assert.deepEqual(a.body, new Uint8Array(40_000).fill(7));
  assert.deepEqual(b.body, new Uint8Array(100).fill(7));
});

Deno.test("RetainedRoom holds about twice what it keeps under repeating cycles of sizes around a quarter chunk", () => {
  const buf = new Uint8Array(70_000);
  const cycles = [
    [16_385, 8_191, 1, 16_383, 16_384],
    [16_384, 1, 16_385],
    [16_385, 1],
    [40_000, 300, 300, 16_384, 16_384, 16_384, 16_385],
  ];
  for (const cycle of cycles) {
    for (const limits of [{ size: 3000, ttlMs: 0 }, { size: 200, ttlMs: 0 }]) {
      const room = new RetainedRoom("e", 0, new RetainedBudget());
      let offset = 0;
      let worst = 0;
      while (offset < 6000) {
        for (const n of cycle) {
          room.push(++offset, buf.subarray(0, n), 0, limits);
          if (offset > 1000) {
            const over = room.heldBytes() - 2 * room.bytes;
            worst = Math.max(worst, over);
          }
        }
      }
      assert.ok(
        worst <= 4 * 65_536,
        `cycle ${cycle}, size ${limits.size}: ${worst} bytes over twice what it keeps`,
      );
    }
  }
});
