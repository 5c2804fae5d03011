import assert from "node:assert/strict";
import type { HistoryStore, StoredMessage } from "../rooms/history_store.ts";
import { frameChatMessage } from "./messages.ts";
import { PREFIX_BYTES } from "./framing.ts";
import { readKeys } from "./stored_key.ts";

/** A shared store's room (`follow` set) whose history can start again. */
function sharedRoom() {
  const room = { epoch: "e1", messages: [] as StoredMessage[] };
  const add = (key: string) => {
    const offset = room.messages.length + 1;
    const body = frameChatMessage(
      `msg_${offset}`,
      "ann",
      "x",
      "r",
      Date.now(),
      undefined,
      key,
    ).subarray(PREFIX_BYTES);
    room.messages.push({ offset, body });
  };
  const store: Pick<HistoryStore, "read" | "position" | "follow"> = {
    read: (_room, after, limit, epoch) =>
      Promise.resolve(
        epoch !== undefined && epoch !== room.epoch
          ? []
          : room.messages.filter((m) => m.offset > after).slice(0, limit),
      ),
    position: () =>
      Promise.resolve({ epoch: room.epoch, offset: room.messages.length }),
    follow: () => Promise.reject(new Error("not used")),
  };
  return { room, add, store };
}

// No store here takes this path (Redis checks keys itself); kept for a
// shared store that does not (rooms/idempotency.ts, `shared`).
Deno.test("readKeys: on a shared store, a room whose history started again (a new epoch, offsets from 1) is read from its start", async () => {
  const { room, add, store } = sharedRoom();
  for (let i = 0; i < 5; i++) add(`old${i}`);
  const first = await readKeys(store, "r", { last: 0 });
  assert.deepEqual(first.keys.map((k) => k.key), [
    "old0",
    "old1",
    "old2",
    "old3",
    "old4",
  ]);
  assert.deepEqual([first.last, first.epoch], [5, "e1"]);
  // Nothing new in the same epoch: nothing read.
  const same = await readKeys(store, "r", first);
  assert.deepEqual([same.keys, same.last, same.epoch], [[], 5, "e1"]);
  // The room starts again with fewer messages than were read of the old.
  room.epoch = "e2";
  room.messages = [];
  add("new0");
  add("new1");
  const again = await readKeys(store, "r", same);
  assert.deepEqual(again.keys.map((k) => [k.key, k.offset]), [
    ["new0", 1],
    ["new1", 2],
  ]);
  assert.deepEqual([again.last, again.epoch], [2, "e2"]);
});
