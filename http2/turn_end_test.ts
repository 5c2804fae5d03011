import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { atTurnEnd, beforeTurnEnds, writeAtTurnEnd } from "./turn_end.ts";

Deno.test("turn end: flushes queued by flushes run in the same turn end, then every final, before the next turn", async () => {
  const marks: string[] = [];
  await new Promise<void>((resolve) => {
    beforeTurnEnds(() => {
      marks.push("flush 1");
      // A commit delivering to a subscriber, whose stream flushes.
      beforeTurnEnds(() => {
        marks.push("flush 2");
        atTurnEnd(() => marks.push("final 2"));
      });
      atTurnEnd(() => marks.push("final 1"));
    });
    setImmediate(() => {
      marks.push("next turn");
      resolve();
    });
  });
  assert.deepEqual(marks, [
    "flush 1",
    "flush 2",
    "final 1",
    "final 2",
    "next turn",
  ]);
});

Deno.test("turn end: what a final queues runs at the next turn end", async () => {
  const marks: string[] = [];
  await new Promise<void>((resolve) => {
    atTurnEnd(() => {
      marks.push("final 1");
      beforeTurnEnds(() => marks.push("flush 2"));
      atTurnEnd(() => {
        marks.push("final 2");
        resolve();
      });
    });
  });
  assert.deepEqual(marks, ["final 1", "flush 2", "final 2"]);
});

Deno.test("turn end: the connections' writes start after the finals, smallest first, sized at the turn end", async () => {
  const marks: string[] = [];
  const sizes = { big: 10, small: 500, mid: 100 };
  const write = (name: keyof typeof sizes) => ({
    get size() {
      return sizes[name];
    },
    write: () => marks.push(name),
  });
  await new Promise<void>((resolve) => {
    writeAtTurnEnd(write("big"));
    beforeTurnEnds(() => {
      marks.push("flush");
      // The broadcast of a commit makes "big" big; "small" stays small.
      sizes.big = 9000;
      sizes.small = 50;
      writeAtTurnEnd(write("mid"));
    });
    writeAtTurnEnd(write("small"));
    atTurnEnd(() => marks.push("final"));
    setImmediate(() => {
      marks.push("next turn");
      resolve();
    });
  });
  assert.deepEqual(marks, [
    "flush",
    "final",
    "small",
    "mid",
    "big",
    "next turn",
  ]);
});
