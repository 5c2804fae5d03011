/**
 * Chat's echo is larger than the message it answers ("echo_", "Echo: ", a
 * timestamp): a message whose broadcast fits --max-message-bytes but whose
 * echo would not is refused before it is stored, RESOURCE_EXHAUSTED naming
 * the echo. It used to be stored and broadcast, then the echo failed the
 * send limit: the call ended "Sent message larger than max" with the
 * message posted, and every retry with its key did the same.
 */
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { startCore, streamError, take } from "./support/core.ts";

Deno.test("Chat: a message whose echo would be over --max-message-bytes is refused before it is stored; a smaller one is echoed", async () => {
  await using f = await startCore({ maxMessageBytes: 1024 });
  const sub = f.newClient().subscribeMessages({ room: "r", user: "w" });
  await take(sub, 1);

  // Body 995 bytes, 1022 as broadcast (offset, epoch): under the limit;
  // its echo is over it.
  const chat = f.client.chat();
  chat.write({ user: "u", room: "r", content: "x".repeat(986) });
  const err = await streamError(chat);
  assert.equal(err.code, status.RESOURCE_EXHAUSTED, err.details);
  assert.match(
    err.details,
    /too large to echo: \d+ bytes as its echo, limit 1024/,
  );

  // Nothing of it reached the room: the next message is the next one sent.
  await f.client.sendMessage({ user: "u", room: "r", content: "after" });
  const [next] = await take(sub, 1);
  assert.equal(next.content, "after");

  const ok = f.client.chat();
  ok.write({ user: "u", room: "r", content: "y".repeat(900) });
  const [echo] = await take(ok, 1);
  assert.equal(echo.content, "Echo: " + "y".repeat(900));
  ok.end();
  sub.cancel();
});
