/**
 * `--transport node` (grpc-js on Deno's node:http2): a stream that Deno's
 * node:http2 resets right after its HEADERS (a client's protocol error on
 * it), before it has handed the stream to the server, must not abort the
 * core. grpc-js answered such a stream (a 415
 * for a content type it does not take) and the answer threw "The stream has
 * been destroyed" out of the stream listener: five h2spec cases (5.1 #6,
 * 5.1.2 #1, 6.4 #3, 6.9 #2, 6.9.1 #3) killed the process (docs/h2spec.md).
 */
import assert from "node:assert/strict";
import { createChatClient } from "../client/rpc.ts";
import { windowUpdateFrame } from "../protocol/http2/frames.ts";
import { rawClient } from "./fixtures/h2_raw_client.ts";
import { QUIET_CORE_ARGS, spawnCore } from "./support/core_process.ts";

Deno.test("--transport node: streams node:http2 resets right after their HEADERS do not abort the core", async () => {
  await using core = await spawnCore([
    "--transport",
    "node",
    ...QUIET_CORE_ARGS,
  ]);
  for (const contentType of ["text/plain", "application/grpc"]) {
    using peer = await rawClient(core.port);
    const frames: Uint8Array[] = [];
    for (let id = 1; id <= 19; id += 2) {
      frames.push(
        peer.headers(id, [
          [":method", "POST"],
          [":scheme", "http"],
          [":path", "/chat.ChatService/SendMessage"],
          [":authority", "localhost"],
          ["content-type", contentType],
          ["te", "trailers"],
        ]),
        // An increment of 0 on the stream: node:http2 resets it
        // (PROTOCOL_ERROR) before it emits it (h2spec 6.9 #2).
        windowUpdateFrame(id, 0),
      );
    }
    await peer.write(...frames);
    await new Promise((r) => setTimeout(r, 300));
  }
  const client = createChatClient(core.addr);
  try {
    const res = await client.sendMessage({
      user: "ann",
      room: "r",
      content: "still here",
    });
    assert.match(res.messageId, /^msg_\d+$/);
  } finally {
    client.close();
  }
  assert.doesNotMatch(core.output(), /destroyed|uncaught/i);
});
