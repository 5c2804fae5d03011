/**
 * The bridge's header parsing, metadata allow-list and request queue, plus the
 * allow-list seen from a core that reports the metadata it received.
 *
 * @module
 */
import { DEFAULT_EDGE_CONFIG } from "../edge/config.ts";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { MessageSchema } from "../gen/chat_pb.ts";
import { createUpstream } from "../edge/upstream/mod.ts";
import { createWebSocketBridge } from "../edge/websocket.ts";
import { filterMetadata, parseCallHeader } from "../edge/websocket_header.ts";
import { RequestQueue } from "../edge/websocket_queue.ts";
import { openWsCall } from "../web/ws_call.ts";
import { startFixtureCore } from "./fixtures/edge_core.ts";

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

Deno.test("RequestQueue.push() refuses past its byte bound and delivers in order after close", async () => {
  const queue = new RequestQueue(10);
  assert.equal(queue.push(new Uint8Array(6)), true);
  assert.equal(queue.push(new Uint8Array(6)), false);
  assert.equal(queue.push(new Uint8Array(4)), true);
  queue.close();
  assert.equal(queue.push(new Uint8Array(1)), false);
  const sizes = [];
  for await (const item of queue) sizes.push(item.byteLength);
  assert.deepEqual(sizes, [6, 4]);
});

Deno.test("createWebSocketBridge() forwards only allow-listed metadata to the core", async () => {
  const core = await startFixtureCore();
  const upstream = createUpstream(
    DEFAULT_EDGE_CONFIG.upstreamClient,
    `http://127.0.0.1:${core.port}`,
    {
      maxMessageBytes: 1 << 20,
    },
  );
  const bridge = createWebSocketBridge(upstream, { maxMessageBytes: 1 << 16 });
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    bridge,
  );
  try {
    const call = openWsCall(`ws://127.0.0.1:${http.addr.port}/ws`, {
      path: "/chat.ChatService/UploadMessages",
      metadata: {
        "custom-header-1": "kept",
        "x-request-id": "r-1",
        cookie: "dropped",
        "grpc-timeout": "1n",
      },
    });
    call.send(toBinary(
      MessageSchema,
      create(MessageSchema, { user: "u", room: "r", content: "c" }),
    ));
    call.closeSend();
    for await (const _ of call.messages) { /* drain */ }
    assert.equal((await call.status).code, 0);
    const seen = core.lastMetadata();
    assert.equal(seen["custom-header-1"], "kept");
    assert.equal(seen["x-request-id"], "r-1");
    assert.equal(seen["cookie"], undefined);
    assert.notEqual(seen["grpc-timeout"], "1n");
  } finally {
    await http.shutdown();
    await upstream.close();
    await core.close();
  }
});

Deno.test("createWebSocketBridge() refuses timeouts a timer cannot take (2^31 ms and up)", () => {
  const upstream = { call: () => Promise.reject(new Error("unused")) };
  for (const key of ["maxTimeoutMs", "headerTimeoutMs"] as const) {
    assert.throws(
      () =>
        createWebSocketBridge(upstream as never, {
          maxMessageBytes: 1024,
          [key]: 2 ** 31,
        }),
      new RegExp(`${key} must be at most 2147483647`),
    );
  }
});
