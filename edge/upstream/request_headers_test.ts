import assert from "node:assert/strict";
import { HpackDecoder } from "../../protocol/http2/hpack.ts";
import {
  HeaderLimitError,
  MAX_METADATA_BYTES,
  MAX_METADATA_VALUE_BYTES,
  metadataLimitError,
  RequestHeaderEncoder,
} from "./request_headers.ts";

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

Deno.test("RequestHeaderEncoder: listSize is the block's header list size; metadata over the edge's bounds throws HeaderLimitError", () => {
  const enc = new RequestHeaderEncoder("http", "core:50051");
  const path = "/chat.ChatService/SendMessage";
  const listSize = (block: Uint8Array) =>
    new HpackDecoder().decode(block).reduce(
      (n, [k, v]) => n + k.length + v.length + 32,
      0,
    );
  for (
    const [metadata, timeout] of [
      [{}, undefined],
      [{}, undefined], // the cached block
      [{ authorization: "Bearer t", te: "reserved, not sent" }, 1500],
    ] as const
  ) {
    const block = enc.build(path, metadata, timeout);
    assert.equal(enc.listSize, listSize(block));
  }
  const atBounds = {
    "x-request-id": "a".repeat(MAX_METADATA_VALUE_BYTES),
    "x-user-agent": "b".repeat(MAX_METADATA_BYTES - 2 * 12 - 8192),
  };
  enc.build(path, atBounds, undefined);
  assert.equal(metadataLimitError(atBounds), undefined);
  const overValue = {
    "X-Request-Id": "a".repeat(MAX_METADATA_VALUE_BYTES + 1),
  };
  assert.throws(
    () => enc.build(path, overValue, undefined),
    (e) =>
      e instanceof HeaderLimitError &&
      /metadata x-request-id is 8193/.test(e.message),
  );
  assert.match(metadataLimitError(overValue)!, /x-request-id is 8193/);
  const overTotal = { ...atBounds, "custom-header-1": "c" };
  assert.throws(() => enc.build(path, overTotal, undefined), HeaderLimitError);
  assert.match(metadataLimitError(overTotal)!, /at custom-header-1/);
  // Reserved names are never forwarded and do not count.
  assert.equal(
    metadataLimitError({ "grpc-x": "a".repeat(MAX_METADATA_BYTES + 1) }),
    undefined,
  );
});
