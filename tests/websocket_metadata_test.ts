/**
 * The bridge's metadata allow-list seen from a core that reports the
 * metadata it received (the parsing and the queue are unit-tested beside
 * their modules in edge/).
 *
 * @module
 */
import { DEFAULT_EDGE_CONFIG } from "../edge/config.ts";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { MessageSchema } from "../gen/chat_pb.ts";
import { createUpstream } from "../edge/upstream/mod.ts";
import { createWebSocketBridge } from "../edge/websocket.ts";
import { openWsCall } from "../web/ws_call.ts";
import { startFixtureCore } from "./fixtures/edge_core.ts";

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
