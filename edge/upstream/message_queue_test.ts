import assert from "node:assert/strict";
import { MessageQueue } from "./message_queue.ts";

function tracked(highWaterMark: number, highWaterBytes = Infinity) {
  const log: string[] = [];
  const q = new MessageQueue({
    highWaterMark,
    highWaterBytes,
    pause: () => log.push("pause"),
    resume: () => log.push("resume"),
    cancel: () => log.push("cancel"),
  });
  return { q, log };
}
const b = (n: number) => new Uint8Array([n]);

Deno.test("MessageQueue pauses at the high-water mark and resumes below half", async () => {
  const { q, log } = tracked(4);
  for (let i = 0; i < 4; i++) q.push(b(i));
  assert.deepEqual(log, ["pause"]);
  q.push(b(4));
  assert.deepEqual(log, ["pause"]);
  const it = q[Symbol.asyncIterator]();
  for (let i = 0; i < 3; i++) assert.equal((await it.next()).value![0], i);
  assert.deepEqual(log, ["pause"]);
  assert.equal((await it.next()).value![0], 3);
  assert.deepEqual(log, ["pause", "resume"]);
  q.end();
  assert.equal((await it.next()).value![0], 4);
  assert.equal((await it.next()).done, true);
  assert.deepEqual(log, ["pause", "resume"]);
});

Deno.test("MessageQueue wakes a waiting consumer on push and on end", async () => {
  const { q } = tracked(8);
  const it = q[Symbol.asyncIterator]();
  const pending = it.next();
  q.push(b(7));
  assert.equal((await pending).value![0], 7);
  const last = it.next();
  q.end();
  assert.equal((await last).done, true);
});

Deno.test("MessageQueue reports cancel when the consumer stops early", async () => {
  const { q, log } = tracked(8);
  q.push(b(1));
  q.push(b(2));
  for await (const _ of q) break;
  assert.deepEqual(log, ["cancel"]);
});

Deno.test("MessageQueue pauses at the byte mark too, and resumes once below half of both", async () => {
  const { q, log } = tracked(16, 1000);
  q.push(new Uint8Array(400));
  q.push(new Uint8Array(400));
  assert.deepEqual(log, []);
  q.push(new Uint8Array(400));
  assert.deepEqual(log, ["pause"]);
  const it = q[Symbol.asyncIterator]();
  await it.next();
  assert.deepEqual(log, ["pause"], "800 bytes left: above half");
  await it.next();
  assert.deepEqual(log, ["pause", "resume"]);
  // One message above the mark still goes through, alone.
  q.push(new Uint8Array(5000));
  assert.deepEqual(log, ["pause", "resume", "pause"]);
  assert.equal((await q.nextBatch())!.length, 2);
  assert.deepEqual(log, ["pause", "resume", "pause", "resume"]);
});
