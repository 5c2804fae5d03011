import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { CommitQueue } from "./commit_queue.ts";
import type { AppendEntry, HistoryStore } from "./history_store.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import { atTurnEnd } from "../../http2/turn_end.ts";

const entry = (room: string): AppendEntry => ({
  room,
  body: new Uint8Array([1, 2, 3]),
  timeMs: Date.now(),
});

/** A memory store that logs each commit, synchronous or not. */
function loggingStore(marks: string[], sync: boolean) {
  const memory = createMemoryStore({ size: 10, ttlMs: 0 });
  const store: HistoryStore = {
    ...memory,
    append: (entries, lastId) => {
      marks.push(`append ${entries.length}`);
      return memory.append(entries, lastId);
    },
    appendSync: sync
      ? (entries, lastId) => {
        marks.push(`appendSync ${entries.length}`);
        return memory.appendSync!(entries, lastId);
      }
      : undefined,
  };
  return { store, close: () => memory.close() };
}

Deno.test("CommitQueue with a synchronous store: a turn's publishes are committed at its end, answered after the commit and before the turn's frames leave", async () => {
  const marks: string[] = [];
  const { store, close } = loggingStore(marks, true);
  const queue = new CommitQueue(
    store,
    () => 0,
    (entries) => marks.push(`stored ${entries.length}`),
    (err) => {
      throw err;
    },
  );
  const next = new Promise<void>((resolve) => {
    for (const room of ["a", "b", "a"]) {
      queue.add(entry(room), (err, appended) => {
        assert.equal(err, undefined);
        marks.push(`done ${room} ${appended!.offset}`);
        // An answer's frames: the socket write at the end of this turn.
        atTurnEnd(() => marks.push(`written ${room}`));
      });
    }
    assert.equal(queue.pending, 3);
    // Nothing is committed during the turn that publishes.
    assert.equal(marks.length, 0);
    // Queued after the publishes: the next turn's first callback.
    setImmediate(() => {
      marks.push("next turn");
      resolve();
    });
  });
  await next;
  assert.deepEqual(marks, [
    "appendSync 3",
    "stored 3",
    "done a 1",
    "done b 1",
    "done a 2",
    "written a",
    "written b",
    "written a",
    "next turn",
  ]);
  assert.equal(queue.pending, 0);
  close();
});

Deno.test("CommitQueue with a synchronous store that throws: nobody hears of a commit, all hear the error in the same turn", async () => {
  const memory = createMemoryStore({ size: 10, ttlMs: 0 });
  let broken = true;
  const store: HistoryStore = {
    ...memory,
    appendSync: (entries, lastId) => {
      if (broken) throw new Error("disk full");
      return memory.appendSync!(entries, lastId);
    },
  };
  const delivered: number[] = [];
  const queue = new CommitQueue(
    store,
    () => 0,
    (entries) => delivered.push(entries.length),
    (err) => {
      throw err;
    },
  );
  const heard: string[] = [];
  await new Promise<void>((resolve) => {
    queue.add(entry("r"), (err) => heard.push(err!.message));
    queue.add(entry("r"), (err) => heard.push(err!.code));
    setImmediate(resolve);
  });
  assert.deepEqual(heard, [
    "history store unavailable: disk full",
    "unavailable",
  ]);
  assert.deepEqual(delivered, []);
  broken = false;
  const offset = await new Promise<number>((resolve) =>
    queue.add(entry("r"), (_err, appended) => resolve(appended!.offset))
  );
  // The failed batch's offsets are handed out again.
  assert.equal(offset, 1);
  assert.deepEqual(delivered, [1]);
  memory.close();
});

Deno.test("CommitQueue with an asynchronous store: one append in flight, publishes meanwhile go in the next one", async () => {
  const marks: string[] = [];
  const { store, close } = loggingStore(marks, false);
  const queue = new CommitQueue(store, () => 0, () => {}, (err) => {
    throw err;
  });
  const offsets: number[] = [];
  await new Promise<void>((resolve) => {
    queue.add(entry("r"), (_err, a) => {
      offsets.push(a!.offset);
      // Published while the first append was in flight.
      queue.add(entry("r"), (_err, a) => {
        offsets.push(a!.offset);
        resolve();
      });
    });
  });
  assert.deepEqual(marks, ["append 1", "append 1"]);
  assert.deepEqual(offsets, [1, 2]);
  close();
});
