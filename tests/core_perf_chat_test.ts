/**
 * Chat on the direct write path: a client that stops reading gets every
 * echo, in order, once it reads again, and a half-close after a burst still
 * ends with OK after the last echo (correctness, not timing).
 */
import assert from "node:assert/strict";
import { rest, startCore, take } from "./support/core.ts";

Deno.test("Chat echoes a burst in order across backpressure from a paused reader", async () => {
  await using f = await startCore();
  const chat = f.client.chat();
  const n = 600;
  const content = "z".repeat(8 * 1024);
  chat.pause();
  for (let i = 0; i < n; i++) {
    chat.write({ id: `m${i}`, user: "u", room: "r", content });
  }
  // Long enough for the server to fill the stream and stop reading.
  await new Promise((r) => setTimeout(r, 200));
  const echoes = await take(chat, n, 10_000);
  assert.deepEqual(
    echoes.map((e) => e.id),
    Array.from({ length: n }, (_, i) => `echo_m${i}`),
  );
  assert.ok(echoes.every((e) => e.content === `Echo: ${content}`));
  chat.end();
  assert.deepEqual(await rest(chat), []);
});

Deno.test("Chat half-closed right after a burst ends OK after the last echo", async () => {
  await using f = await startCore();
  const chat = f.client.chat();
  for (let i = 0; i < 200; i++) {
    chat.write({ id: `b${i}`, user: "u", room: "r", content: "hi" });
  }
  chat.end();
  const echoes = await rest(chat);
  assert.equal(echoes.length, 200);
  assert.equal(echoes.at(-1)?.id, "echo_b199");
});
