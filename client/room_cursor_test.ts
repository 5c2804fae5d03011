import assert from "node:assert/strict";
import { RoomCursor } from "./room_cursor.ts";

const at = (offset: number, epoch = "e1") => ({
  offset: BigInt(offset),
  epoch,
});

Deno.test("RoomCursor.request() asks for history first, then resumes from the last offset shown", () => {
  const c = new RoomCursor(20);
  assert.deepEqual(c.request(), { history: 20, epoch: "", sinceOffset: 0n });
  assert.deepEqual(c.welcome(at(50)), {
    kind: "joined",
    offset: 50n,
    history: 20,
  });
  for (let o = 31; o <= 52; o++) assert.equal(c.accept(at(o)), "show");
  assert.deepEqual(c.request(), { history: 0, epoch: "e1", sinceOffset: 52n });
});

Deno.test("RoomCursor.welcome() counts the missed messages on resume and accept() drops duplicates", () => {
  const c = new RoomCursor(0);
  c.welcome(at(3));
  assert.equal(c.accept(at(4)), "show");
  assert.deepEqual(c.welcome(at(7)), { kind: "resumed", missed: 3n });
  assert.equal(c.accept(at(4)), "duplicate");
  assert.equal(c.accept(at(5)), "show");
  assert.equal(c.accept(at(5)), "duplicate");
  assert.deepEqual(c.welcome(at(5)), { kind: "resumed", missed: 0n });
});

Deno.test("RoomCursor.accept() asks to refetch a live gap, and reports it once a replay cannot fill it", () => {
  const c = new RoomCursor(10);
  c.welcome(at(100));
  // Only 3 of the 10 asked for are retained: not a gap.
  assert.equal(c.accept(at(98)), "show");
  assert.equal(c.accept(at(99)), "show");
  // 100 and 101 were skipped (a slow subscriber): replay from 99.
  assert.equal(c.accept(at(102)), "refetch");
  assert.deepEqual(c.request(), { history: 0, epoch: "e1", sinceOffset: 99n });
  assert.deepEqual(c.welcome(at(102)), { kind: "resumed", missed: 3n });
  // The replay starts at 101: 100 is gone from history, say so.
  assert.deepEqual(c.accept(at(101)), { gap: 1n });
  assert.equal(c.accept(at(102)), "show");
  assert.equal(c.accept(at(0, "")), "show");
  assert.deepEqual(c.position, { epoch: "e1", offset: 102n });
});

Deno.test("RoomCursor.welcome() says reset for a new epoch and no-history for a server without one", () => {
  const c = new RoomCursor(5);
  c.welcome(at(9));
  // The new epoch holds 2 messages already: both are asked for next.
  assert.deepEqual(c.welcome(at(2, "e2")), { kind: "reset", replay: 2n });
  assert.deepEqual(c.request(), { history: 0, epoch: "e2", sinceOffset: 0n });
  assert.deepEqual(c.welcome(at(2, "e2")), { kind: "resumed", missed: 2n });
  assert.equal(c.accept(at(1, "e2")), "show");
  assert.equal(c.accept(at(2, "e2")), "show");
  assert.equal(c.accept(at(2, "e2")), "duplicate");
  // One of 40: the last 5 (the cursor's history) are asked for, and the
  // first of them coming trimmed is no gap to report.
  assert.deepEqual(c.welcome(at(40, "e3")), { kind: "reset", replay: 5n });
  assert.deepEqual(c.request(), { history: 0, epoch: "e3", sinceOffset: 35n });
  c.welcome(at(40, "e3"));
  assert.equal(c.accept(at(38, "e3")), "show");
  // An empty new epoch: nothing to ask for.
  assert.deepEqual(c.welcome(at(0, "e4")), { kind: "reset", replay: 0n });
  assert.deepEqual(c.welcome(at(0, "")), { kind: "no-history" });
  assert.deepEqual(c.request(), { history: 0, epoch: "", sinceOffset: 0n });
  assert.equal(c.accept(at(0, "")), "show");
});
