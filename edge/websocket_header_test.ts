import assert from "node:assert/strict";
import { filterMetadata, parseCallHeader } from "./websocket_header.ts";

Deno.test("parseCallHeader() accepts a path with metadata and timeout", () => {
  assert.deepEqual(
    parseCallHeader(
      '{"path":"/chat.ChatService/Chat","metadata":{"x-request-id":"7"},"timeoutMs":50}',
    ),
    {
      path: "/chat.ChatService/Chat",
      metadata: { "x-request-id": "7" },
      timeoutMs: 50,
    },
  );
});

Deno.test("parseCallHeader() refuses non-JSON, bad paths, bad metadata and bad timeouts", () => {
  for (
    const text of [
      "not json",
      "[]",
      '{"path":"Chat"}',
      '{"path":"/a/b/c"}',
      '{"path":"/chat.ChatService/Chat","metadata":{"n":1}}',
      '{"path":"/chat.ChatService/Chat","metadata":["x"]}',
      '{"path":"/chat.ChatService/Chat","timeoutMs":-1}',
      '{"path":"/chat.ChatService/Chat","timeoutMs":"5"}',
      JSON.stringify({ path: `/chat.ChatService/${"M".repeat(1100)}` }),
    ]
  ) {
    assert.equal(parseCallHeader(text), undefined, text);
  }
});

Deno.test("filterMetadata() keeps allow-listed names only, never grpc-* or control characters", () => {
  const allowed = new Set(["x-request-id", "authorization", "grpc-timeout"]);
  assert.deepEqual(
    filterMetadata({
      "X-Request-Id": "abc",
      authorization: "Bearer t\r\nx-evil: 1",
      "grpc-timeout": "1S",
      cookie: "secret",
    }, allowed),
    { "x-request-id": "abc" },
  );
});

Deno.test("filterMetadata() drops values an HTTP/2 header cannot carry: past printable ASCII (é, 😀, U+0100) as well as control characters", () => {
  const allowed = new Set(["x-request-id", "x-user-agent", "custom-header-1"]);
  assert.deepEqual(
    filterMetadata({
      "x-request-id": "caf\u00e9",
      "x-user-agent": "\u{1f600}",
      "custom-header-1": "ok value\twith tab",
    }, allowed),
    { "custom-header-1": "ok value\twith tab" },
  );
  assert.deepEqual(filterMetadata({ "x-request-id": "\u0100" }, allowed), {});
});

Deno.test("filterMetadata() trims spaces and tabs at either end of a value, as fetch() does for the HTTP paths", () => {
  // Forwarded as sent, the core's HTTP/2 reset the stream (RFC 9113
  // §8.2.1): the bridge's call failed INTERNAL, where gRPC-Web and Connect
  // (whose header values fetch() trims) were served.
  const allowed = new Set(["authorization", "x-request-id"]);
  assert.deepEqual(
    filterMetadata({
      authorization: " \tBearer a.b.c \t",
      "x-request-id": "in\tside ",
    }, allowed),
    { authorization: "Bearer a.b.c", "x-request-id": "in\tside" },
  );
});
