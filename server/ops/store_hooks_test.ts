import assert from "node:assert/strict";
import { observeStore } from "./store_hooks.ts";

/** A store stand-in with the history store's status/onCommit shape. */
function fakeStore() {
  let state: "ok" | "down" = "ok";
  const store = {
    onCommit: undefined as ((ms: number, ok: boolean) => void) | undefined,
    status: () => ({ state }),
    commit(ms: number, ok: boolean) {
      state = ok ? "ok" : "down";
      store.onCommit?.(ms, ok);
    },
  };
  return store;
}

Deno.test("observeStore() times every commit and tells watchers only when the state flips", () => {
  const store = fakeStore();
  const observed: [string, number][] = [];
  const source = observeStore(store, {
    observe: (op, seconds) => observed.push([op, seconds]),
  });
  let changes = 0;
  const stop = source.watch(() => changes++);
  assert.equal(source.name, "store");
  assert.equal(source.serving(), true);
  store.commit(2, true);
  store.commit(3, true);
  assert.equal(changes, 0);
  store.commit(5, false);
  assert.equal(source.serving(), false);
  assert.equal(changes, 1);
  store.commit(4, false);
  store.commit(1, true);
  assert.equal(changes, 2);
  assert.equal(source.serving(), true);
  assert.deepEqual(observed.map(([op]) => op), Array(5).fill("commit"));
  assert.deepEqual(observed.map(([, s]) => s), [
    0.002,
    0.003,
    0.005,
    0.004,
    0.001,
  ]);
  stop();
  store.commit(1, false);
  assert.equal(changes, 2);
});
