import assert from "node:assert/strict";
import { HpackDecoder } from "../../protocol/http2/hpack.ts";
import { RequestHeaderEncoder } from "./request_headers.ts";

const decode = (block: Uint8Array) => new HpackDecoder().decode(block);

Deno.test("RequestHeaderEncoder: a call without metadata or deadline gets the full block, the same for every call of a path", () => {
  const enc = new RequestHeaderEncoder("http", "core:50051");
  const first = enc.build("/chat.ChatService/SendMessage", {}, undefined);
  const fields = [
    [":method", "POST"],
    [":scheme", "http"],
    [":authority", "core:50051"],
    [":path", "/chat.ChatService/SendMessage"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ["user-agent", "chat-edge/1"],
  ];
  assert.deepEqual(decode(first), fields);
  const again = enc.build("/chat.ChatService/SendMessage", {}, undefined);
  assert.deepEqual(again, first);
  assert.deepEqual(decode(again), fields);
  // Metadata or a deadline: their own block, and the bare one is unchanged.
  const withMeta = enc.build(
    "/chat.ChatService/SendMessage",
    { authorization: "Bearer t" },
    1500,
  );
  assert.deepEqual(decode(withMeta), [
    ...fields,
    ["grpc-timeout", "1500m"],
    ["authorization", "Bearer t"],
  ]);
  const other = enc.build("/chat.ChatService/Subscribe", {}, undefined);
  assert.deepEqual(decode(other)[3], [":path", "/chat.ChatService/Subscribe"]);
  assert.deepEqual(
    decode(enc.build("/chat.ChatService/SendMessage", {}, undefined)),
    fields,
  );
});
