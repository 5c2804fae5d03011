import assert from "node:assert/strict";
import type { HistoryStore, StoredMessage } from "../rooms/history_store.ts";
import { frameChatMessage } from "./messages.ts";
import { PREFIX_BYTES } from "./framing.ts";
import { readKeys } from "./stored_key.ts";

/** A store's room of `messages`, read in pages as a store reads them. */
function room(messages: StoredMessage[]): Pick<HistoryStore, "read"> {
  return {
    read: (_room, after, limit) =>
      Promise.resolve(
        messages.filter((m) => m.offset > after).slice(0, limit),
      ),
  };
}

const body = (id: string, key: string) =>
  frameChatMessage(id, "ann", "x", "r", 1_000, undefined, key)
    .subarray(PREFIX_BYTES);

Deno.test("readKeys: every keyed message of a room after an offset, over several pages, dated by the store; no over-long key", async () => {
  const messages: StoredMessage[] = [];
  for (let offset = 1; offset <= 600; offset++) {
    // Every third has a key. A client's own id (UploadMessages, Chat) is
    // read like a server's; an over-long key (stored before streamed keys
    // were checked) is not.
    const key = offset % 3 === 0 ? `k${offset}` : "";
    const id = offset === 300 ? "client chosen" : `msg_${offset}`;
    messages.push({
      offset,
      body: body(id, offset === 450 ? "k".repeat(129) : key),
      timeMs: offset === 3 ? 5_000 : undefined,
    });
  }
  const all = await readKeys(room(messages), "r", 0);
  assert.equal(all.last, 600);
  const want = messages.filter((m) => m.offset % 3 === 0)
    .map((m) => m.offset).filter((o) => o !== 450);
  assert.deepEqual(all.keys.map((k) => k.offset), want);
  assert.deepEqual(all.keys[0], {
    id: "msg_3",
    user: "ann",
    key: "k3",
    timeMs: 1_000,
    offset: 3,
    storedMs: 5_000,
  });
  assert.equal(all.keys.find((k) => k.offset === 300)?.id, "client chosen");
  const after = await readKeys(room(messages), "r", 590);
  assert.deepEqual(after.keys.map((k) => k.key), [
    "k591",
    "k594",
    "k597",
    "k600",
  ]);
  const none = await readKeys(room(messages), "r", 600);
  assert.deepEqual([none.keys, none.last], [[], 600]);
});
