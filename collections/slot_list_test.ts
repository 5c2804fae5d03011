import assert from "node:assert/strict";
import { SlotList } from "./slot_list.ts";

class Item {
  slot = -1;
  constructor(readonly n: number) {}
}

const ns = (items: Item[]) => items.map((i) => i.n).sort((a, b) => a - b);

Deno.test("SlotList adds, removes in any order and lists its members", () => {
  const list = new SlotList<Item>();
  const items = Array.from({ length: 10 }, (_, n) => new Item(n));
  for (const item of items) list.add(item);
  assert.equal(list.size, 10);
  // First, last and middle members: the moved last one keeps a true slot.
  for (const n of [0, 9, 4, 5, 1]) assert.equal(list.remove(items[n]), true);
  assert.deepEqual(ns(list.values()), [2, 3, 6, 7, 8]);
  for (const item of list.values()) assert.equal(list.remove(item), true);
  assert.equal(list.size, 0);
  assert.ok(items.every((i) => i.slot === -1));
});

Deno.test("SlotList.remove is false for a member of another list or none", () => {
  const a = new SlotList<Item>();
  const b = new SlotList<Item>();
  const x = new Item(1);
  const y = new Item(2);
  a.add(x);
  b.add(y);
  // y's slot (0) is a valid index in a, but a's slot 0 holds x.
  assert.equal(a.remove(y), false);
  assert.equal(a.remove(new Item(3)), false);
  assert.equal(a.size, 1);
  assert.equal(a.remove(x), true);
  assert.equal(a.remove(x), false);
  // A member of one list cannot join another (its slot would go stale).
  assert.throws(() => a.add(y), /already in a SlotList/);
});

Deno.test("SlotList.clear frees every slot; values() is a copy", () => {
  const list = new SlotList<Item>();
  const x = new Item(1);
  list.add(x);
  const snapshot = list.values();
  list.clear();
  assert.equal(list.size, 0);
  assert.equal(x.slot, -1);
  assert.deepEqual(ns(snapshot), [1]);
  list.add(x);
  assert.equal(list.size, 1);
});
