/**
 * Call counting for /metrics on bare grpc-js servers: the direct unary path
 * (server/grpcjs/direct_unary.ts) counts its own calls into CallStats, and the
 * handler wrapper (server/ops/call_counting.ts) counts the others without
 * taking the direct stream writer away from them.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "../gen/chat_pb.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { serverDefinition } from "../server/grpc/definition.ts";
import { enableDirectUnary } from "../server/grpcjs/direct_unary.ts";
import { encodeSendResponse } from "../server/grpc/send_message.ts";
import { ChatError } from "../server/rooms/errors.ts";
import { CallStats } from "../server/ops/call_stats.ts";
import { countCalls } from "../server/ops/call_counting.ts";
import { messageWriter } from "../server/grpcjs/raw_stream.ts";
import { frameMessage } from "../server/grpc/framing.ts";
import { encodeMessage } from "../server/grpc/messages.ts";
import { rejection, rest, serveBare, streamError } from "./support/core.ts";

Deno.test("enableDirectUnary() counts each call's start, status code and duration", async () => {
  const server = new grpc.Server({ "grpc.enable_channelz": 0 });
  server.addService(serverDefinition, {
    SendMessage: () => assert.fail("grpc-js should not serve SendMessage"),
  });
  using bare = await serveBare(server);
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
  const client = bare.client;
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
});

/** A bare grpc-js server with `implementation` wrapped by countCalls(). */
async function countedServer(
  implementation: grpc.UntypedServiceImplementation,
  stats: CallStats,
) {
  const server = new grpc.Server({ "grpc.enable_channelz": 0 });
  stats.registerService(serverDefinition);
  server.addService(
    serverDefinition,
    countCalls(serverDefinition, implementation, stats),
  );
  return await serveBare(server);
}

Deno.test("countCalls() counts streams by how they end and keeps the direct stream writer", async () => {
  const stats = new CallStats();
  const writers: boolean[] = [];
  let calls = 0;
  using s = await countedServer({
    SubscribeMessages(call: grpc.ServerWritableStream<unknown, Uint8Array>) {
      const writer = messageWriter(call);
      writers.push(writer.direct);
      writer.write(frameMessage(encodeMessage({ id: "1", content: "c" })));
      writer.flush();
      if (++calls === 1) call.end();
      else {
        call.emit(
          "error",
          Object.assign(new Error("no"), {
            code: grpc.status.INVALID_ARGUMENT,
            details: "no",
          }),
        );
      }
    },
  }, stats);
  const ok = await rest(s.client.subscribeMessages({ room: "r", user: "u" }));
  assert.equal(ok.length, 1);
  const err = await streamError(
    s.client.subscribeMessages({ room: "r", user: "u" }),
  );
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.deepEqual(writers, [true, true], "the direct writer is kept");
  const row = stats.get("/chat.ChatService/SubscribeMessages")!;
  assert.equal(row.started, 2);
  assert.equal(row.handled[grpc.status.OK], 1);
  assert.equal(row.handled[grpc.status.INVALID_ARGUMENT], 1);
  assert.equal(row.buckets.reduce((a, b) => a + b, 0), 2);
});

Deno.test("countCalls() counts a cancel that arrives just before the deadline as DEADLINE_EXCEEDED (the client's own deadline), an earlier one as CANCELLED", () => {
  const stats = new CallStats();
  stats.registerService(serverDefinition);
  const counted = countCalls(serverDefinition, {
    SubscribeMessages() {},
  }, stats);
  const path = "/chat.ChatService/SubscribeMessages";
  const handler = counted.SubscribeMessages as (call: EventEmitter) => void;
  // The client's reset reaches the server a transit time before the
  // server's own deadline (counted from when the headers arrived).
  for (
    const [aheadMs, code] of [
      [20, grpc.status.DEADLINE_EXCEEDED],
      [-5, grpc.status.DEADLINE_EXCEEDED],
      [5_000, grpc.status.CANCELLED],
    ] as const
  ) {
    const before = stats.get(path)!.handled[code] ?? 0;
    const call = Object.assign(new EventEmitter(), {
      getDeadline: () => new Date(Date.now() + aheadMs),
    });
    handler(call);
    call.emit("cancelled", "cancelled");
    assert.equal(stats.get(path)!.handled[code], before + 1, `${aheadMs}`);
  }
  const never = Object.assign(new EventEmitter(), {
    getDeadline: () => Infinity,
  });
  handler(never);
  never.emit("cancelled", "cancelled");
  const row = stats.get(path)!;
  assert.equal(row.handled[grpc.status.DEADLINE_EXCEEDED], 2);
  assert.equal(row.handled[grpc.status.CANCELLED], 2);
});
