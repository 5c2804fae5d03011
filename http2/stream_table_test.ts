import assert from "node:assert/strict";
import { StreamTable } from "./stream_table.ts";

interface S {
  readonly id: number;
}

function check(table: StreamTable<S>, model: Map<number, S>): void {
  assert.deepEqual(table.size, model.size);
  for (const [id, s] of model) assert.equal(table.get(id), s);
  assert.deepEqual(
    table.values().map((s) => s.id).sort((a, b) => a - b),
    [...model.keys()].sort((a, b) => a - b),
  );
}

Deno.test("StreamTable agrees with a Map under churn, long-lived streams and wrap-around", () => {
  // A fixed seed: the same sequence on every run.
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const table = new StreamTable<S>();
  const model = new Map<number, S>();
  let next = 1;
  for (let step = 0; step < 20_000; step++) {
    const r = random();
    if (r < 0.5 || model.size === 0) {
      const s = { id: next };
      next += 2;
      table.set(s);
      model.set(s.id, s);
    } else {
      // Mostly the oldest short-lived streams; a few stay for long.
      const ids = [...model.keys()];
      const id = ids[Math.floor(random() * ids.length)];
      if (id % 7 === 0 && random() < 0.9) continue;
      assert.deepEqual(table.delete(id), true);
      model.delete(id);
    }
    // Ids never opened, or gone: not found.
    assert.deepEqual(table.get(next), undefined);
    assert.deepEqual(table.delete(next), false);
    if (step % 97 === 0) check(table, model);
  }
  check(table, model);
});

Deno.test("StreamTable grows past many open streams and shrinks back", () => {
  const table = new StreamTable<S>();
  const model = new Map<number, S>();
  for (let id = 1; id < 20_000; id += 2) {
    const s = { id };
    table.set(s);
    model.set(id, s);
  }
  check(table, model);
  for (let id = 1; id < 19_990; id += 2) {
    table.delete(id);
    model.delete(id);
  }
  check(table, model);
  // Colliding ids (same home slot in any small table) still resolve.
  for (const id of [1 + 2 ** 20, 1 + 2 ** 21, 1 + 2 ** 22]) {
    const s = { id };
    table.set(s);
    model.set(id, s);
  }
  check(table, model);
});

Deno.test("StreamTable.set replaces the stream of an id; clear empties it", () => {
  const table = new StreamTable<S>();
  const a = { id: 3 };
  const b = { id: 3 };
  table.set(a);
  table.set(b);
  assert.deepEqual(table.size, 1);
  assert.equal(table.get(3), b);
  table.clear();
  assert.deepEqual(table.size, 0);
  assert.deepEqual(table.get(3), undefined);
  assert.deepEqual(table.values(), []);
});

Deno.test("StreamTable: ids a peer picks to collide under a plain mask still spread out", () => {
  // 1000 open streams (the default max-concurrent-streams) whose ids are
  // equal modulo 8192: under `id & mask` they would share one home slot and
  // a lookup would walk a run of 1000.
  for (const step of [4096, 8192, 1 << 20]) {
    const table = new StreamTable<S>();
    const model = new Map<number, S>();
    for (let k = 0; k < 1000 && 1 + step * k < 2 ** 31; k++) {
      const s = { id: 1 + step * k };
      table.set(s);
      model.set(s.id, s);
    }
    check(table, model);
    // A half-full table with a spread hash: runs of a few dozen at most.
    assert.ok(
      table.longestProbe() < 100,
      `step ${step}: ${table.longestProbe()}`,
    );
    for (const id of [...model.keys()].filter((_, i) => i % 2 === 0)) {
      assert.equal(table.delete(id), true);
      model.delete(id);
    }
    check(table, model);
  }
});

Deno.test("StreamTable agrees with a Map for ids near 2^31", () => {
  const table = new StreamTable<S>();
  const model = new Map<number, S>();
  for (let id = 2 ** 31 - 1; id > 2 ** 31 - 4000; id -= 2) {
    const s = { id };
    table.set(s);
    model.set(id, s);
    if (id % 3 === 0) {
      table.delete(id);
      model.delete(id);
    }
  }
  check(table, model);
});
