import assert from "node:assert/strict";
import {
  encodeConnectEndStream,
  FLAG_END_STREAM,
  parseConnectEndStream,
  ProtocolError,
} from "./mod.ts";

const enc = new TextEncoder();

Deno.test("encodeConnectEndStream() round-trips error and metadata", () => {
  const frame = encodeConnectEndStream({
    error: { code: "invalid_argument", message: "no room" },
    metadata: { "custom-header-1": ["x"] },
  });
  assert.equal(frame[0], FLAG_END_STREAM);
  assert.deepEqual(parseConnectEndStream(frame.subarray(5)), {
    error: { code: "invalid_argument", message: "no room" },
    metadata: { "custom-header-1": ["x"] },
  });
  assert.deepEqual(
    parseConnectEndStream(encodeConnectEndStream({}).subarray(5)),
    {
      metadata: {},
    },
  );
});

Deno.test("parseConnectEndStream() rejects malformed JSON and shapes", () => {
  for (const bad of ["{", "[]", '{"error":{}}', '{"metadata":{"a":"b"}}']) {
    assert.throws(
      () => parseConnectEndStream(enc.encode(bad)),
      (e) => e instanceof ProtocolError && e.kind === "end-stream",
      bad,
    );
  }
});
