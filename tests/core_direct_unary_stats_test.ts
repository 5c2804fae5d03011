/**
 * The direct unary path (server/grpc/direct_unary.ts) counts its own calls
 * into CallStats: on a bare grpc-js server with no interceptor, every count
 * comes from that path.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "../gen/chat_pb.ts";
import { createChatClient } from "../client/rpc.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { serverDefinition } from "../server/grpc/definition.ts";
import { enableDirectUnary } from "../server/grpc/direct_unary.ts";
import { encodeSendResponse } from "../server/grpc/send_message.ts";
import { ChatError } from "../server/rooms/errors.ts";
import { CallStats } from "../server/ops/call_stats.ts";
import { rejection } from "./support/core.ts";

Deno.test("enableDirectUnary() counts each call's start, status code and duration", async () => {
  const server = new grpc.Server({ "grpc.enable_channelz": 0 });
  server.addService(serverDefinition, {
    SendMessage: () => assert.fail("grpc-js should not serve SendMessage"),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err, p) => err ? reject(err) : resolve(p),
    )
  );
  const stats = new CallStats();
  stats.registerService(serverDefinition);
  const patched = enableDirectUnary(
    server,
    new Map([[chatPaths.SendMessage, (request: Uint8Array) => {
      const { content } = fromBinary(SendMessageRequestSchema, request);
      if (content === "bad") {
        throw new ChatError("invalid_argument", "content is bad");
      }
      return encodeSendResponse("m1", 1000);
    }]]),
    { maxMessageBytes: 1 << 20, calls: stats },
  );
  assert.equal(patched, 1);
  const client = createChatClient(`127.0.0.1:${port}`);
  try {
    await client.sendMessage({ user: "u", room: "r", content: "ok" });
    await client.sendMessage({ user: "u", room: "r", content: "ok" });
    const err = await rejection(
      client.sendMessage({ user: "u", room: "r", content: "bad" }),
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    const row = stats.get(chatPaths.SendMessage)!;
    assert.equal(row.started, 3);
    assert.equal(row.handled[grpc.status.OK], 2);
    assert.equal(row.handled[grpc.status.INVALID_ARGUMENT], 1);
    assert.equal(row.buckets.reduce((a, b) => a + b, 0), 3);
    assert.ok(row.latencySum > 0 && row.latencySum < 10);
  } finally {
    client.close();
    server.forceShutdown();
  }
});
