import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { ChatService, SendMessageResponseSchema } from "../gen/chat_pb.ts";
import { createConnectHandler } from "./connect.ts";
import type { Upstream } from "./upstream/types.ts";

/**
 * An upstream answering every call with one response of `bytes`: the real
 * core's only unary answer (SendMessageResponse) is far below the 1 KiB
 * compression threshold, so a big unary answer needs a stand-in.
 */
function answering(bytes: Uint8Array): Upstream {
  return {
    call: () => ({
      headers: Promise.resolve({}),
      messages: {
        async *[Symbol.asyncIterator]() {
          yield bytes;
        },
      },
      status: Promise.resolve({ code: 0, message: "", trailers: {} }),
    }),
    healthy: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  };
}

Deno.test("createConnectHandler() gzips a unary answer of 1 KiB or more when accept-encoding allows", async () => {
  const id = "m".repeat(4000);
  const handle = createConnectHandler(
    answering(
      toBinary(
        SendMessageResponseSchema,
        create(SendMessageResponseSchema, { messageId: id }),
      ),
    ),
    { services: [ChatService], maxMessageBytes: 1 << 20 },
  );
  const request = (accept?: string) =>
    new Request("http://edge/chat.ChatService/SendMessage", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(accept ? { "accept-encoding": accept } : {}),
      },
      body: JSON.stringify({ user: "u", room: "r", content: "c" }),
    });
  const zipped = await handle(request("gzip"))!;
  assert.equal(zipped.status, 200);
  assert.equal(zipped.headers.get("content-encoding"), "gzip");
  const body = new Uint8Array(await zipped.arrayBuffer());
  assert.ok(body.byteLength < 200, `${body.byteLength} bytes`);
  assert.equal(JSON.parse(gunzipSync(body).toString()).messageId, id);

  const plain = await handle(request())!;
  assert.equal(plain.headers.get("content-encoding"), null);
  assert.equal((await plain.json()).messageId, id);
});
