import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { atTurnEnd, beforeTurnEnds } from "./turn_end.ts";

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
