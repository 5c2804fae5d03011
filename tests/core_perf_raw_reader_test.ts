/**
 * The direct request reader (server/grpcjs/raw_reader.ts): it is really taken
 * with this grpc-js version, delivers every message intact and in order
 * across chunk boundaries, falls back for compressed requests, and maps bad
 * request bytes to the statuses grpc-js would send. Also: the hand-encoded
 * echo is byte for byte the reflective one.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { MessageSchema, type MessageType } from "../gen/chat_pb.ts";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { chatPaths } from "../rpc/chat_service.ts";
import { createChatClient } from "../client/rpc.ts";
import { inboundParts, serverDefinition } from "../server/grpc/definition.ts";
import { frameMessage } from "../server/grpc/framing.ts";
import {
  echoMessage,
  encodeMessage,
  frameChatMessage,
  frameEchoMessage,
  planEcho,
  writeEcho,
} from "../server/grpc/messages.ts";
import { decodeChatPost } from "../server/grpc/post_decoder.ts";
import { readMessages } from "../server/grpcjs/raw_reader.ts";
import { startCore } from "./support/core.ts";

interface Seen {
  direct: boolean[];
  contents: string[];
  ends: number;
}

/** A bare grpc-js server whose UploadMessages reads with readMessages(). */
async function startReaderServer(seen: Seen) {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 1 << 20,
  });
  server.addService(serverDefinition, {
    UploadMessages(
      call: grpc.ServerReadableStream<unknown, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      let count = 0;
      const reader = readMessages(call, decodeChatPost, {
        message(m) {
          count++;
          seen.contents.push(
            new TextDecoder().decode(
              m.body.subarray(m.contentAt, m.contentEnd),
            ),
          );
        },
        end() {
          seen.ends++;
          callback(null, { messageCount: count, success: true });
        },
        error(err) {
          callback({ code: grpc.status.INTERNAL, details: err.message });
        },
      }, inboundParts);
      seen.direct.push(reader.direct);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err, p) => err ? reject(err) : resolve(p),
    )
  );
  return { server, port };
}

function upload(
  client: ReturnType<typeof createChatClient>,
  contents: string[],
) {
  return new Promise<{ messageCount: number }>((resolve, reject) => {
    const call = client.uploadMessages((err, res) =>
      err ? reject(err) : resolve(res as { messageCount: number })
    );
    for (const [i, content] of contents.entries()) {
      call.write({ id: `m${i}`, user: "u", room: "r", content });
    }
    call.end();
  });
}

Deno.test("readMessages() takes the direct path and delivers every message intact and in order", async () => {
  const seen: Seen = { direct: [], contents: [], ends: 0 };
  const { server, port } = await startReaderServer(seen);
  const client = createChatClient(`127.0.0.1:${port}`);
  try {
    // Small ones many per chunk, big ones across many DATA frames.
    const contents = Array.from(
      { length: 300 },
      (_, i) => i % 50 === 7 ? `${i}:` + "x".repeat(200_000) : `${i}:é🚀`,
    );
    const res = await upload(client, contents);
    assert.equal(res.messageCount, contents.length);
    assert.deepEqual(seen.direct, [true]);
    assert.deepEqual(seen.contents, contents);
    assert.equal(seen.ends, 1);
  } finally {
    client.close();
    server.forceShutdown();
  }
});

Deno.test("readMessages() falls back to grpc-js for a gzip-compressed request", async () => {
  const seen: Seen = { direct: [], contents: [], ends: 0 };
  const { server, port } = await startReaderServer(seen);
  const client = createChatClient(`127.0.0.1:${port}`, {
    "grpc.default_compression_algorithm": 2,
    "grpc.default_compression_level": 2,
  });
  try {
    const contents = ["a", "b".repeat(10_000), "c"];
    const res = await upload(client, contents);
    assert.equal(res.messageCount, 3);
    assert.deepEqual(seen.direct, [false]);
    assert.deepEqual(seen.contents, contents);
  } finally {
    client.close();
    server.forceShutdown();
  }
});

/** Sends raw request bytes on UploadMessages; resolves with the status. */
async function rawUpload(port: number, body: Uint8Array) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": chatPaths.UploadMessages,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const status = new Promise<{ code: string; message: string }>(
      (resolve) => {
        let code = "", message = "";
        const take = (h: http2.IncomingHttpHeaders) => {
          if (h["grpc-status"] !== undefined) {
            code = String(h["grpc-status"]);
            message = decodeURIComponent(String(h["grpc-message"] ?? ""));
          }
        };
        stream.on("response", take);
        stream.on("trailers", take);
        stream.on("data", () => {});
        stream.on("close", () => resolve({ code, message }));
      },
    );
    stream.end(body);
    return await status;
  } finally {
    session.close();
  }
}

const post = (content: string, user = "u") =>
  frameMessage(
    toBinary(
      MessageSchema,
      create(MessageSchema, { user, room: "r", content }),
    ),
  );

Deno.test("UploadMessages maps bad request bytes to grpc-js's statuses", async () => {
  await using f = await startCore({ maxMessageBytes: 1024 });
  const port = f.core.port;

  const oversize = Buffer.alloc(5);
  oversize.writeUInt32BE(4096, 1);
  let s = await rawUpload(port, Buffer.concat([post("ok"), oversize]));
  assert.equal(s.code, String(grpc.status.RESOURCE_EXHAUSTED));
  assert.match(s.message, /larger than max/);

  const flagged = Buffer.from(post("hi"));
  flagged[0] = 1;
  s = await rawUpload(port, flagged);
  assert.equal(s.code, String(grpc.status.INTERNAL));
  assert.match(s.message, /frame flags 0x01/);

  s = await rawUpload(
    port,
    Buffer.concat([post("ok"), post("cut").subarray(0, 7)]),
  );
  assert.equal(s.code, String(grpc.status.INTERNAL));
  assert.match(s.message, /Incomplete message/);

  s = await rawUpload(
    port,
    Buffer.concat([
      post("ok"),
      frameMessage(new Uint8Array([0x0a, 0x05, 0x61])),
    ]),
  );
  assert.equal(s.code, String(grpc.status.INTERNAL));
  assert.match(s.message, /Error deserializing request/);

  s = await rawUpload(port, Buffer.concat([post("a"), post("b", "")]));
  assert.equal(s.code, String(grpc.status.INVALID_ARGUMENT));
  assert.match(s.message, /message 2: user is required/);

  // The core is still fine, and nothing is left open.
  s = await rawUpload(port, Buffer.concat([post("a"), post("b")]));
  assert.equal(s.code, "0");
  assert.equal(f.core.snapshot().openCalls, 0);
  assert.equal(f.core.snapshot().activeStreams, 0);
});

Deno.test("frameEchoMessage() is byte for byte frameMessage(echoMessage())", () => {
  const messages = [
    { id: "1", content: "hi", room: "r" },
    { id: "", content: "é🚀".repeat(100), room: "général" },
    // Lone surrogates (U+FFFD on the wire), non-ASCII ids, no room.
    { id: "\uD800é", content: "\uDC00x\uD83D", room: "" },
    { id: "x".repeat(200), content: "", room: "r" },
    { id: "", content: "", room: "" },
  ];
  for (const nowMs of [-1500, 0, 999, 1000, 1_700_000_000_123]) {
    for (const m of messages) {
      // As received: other fields around; fields repeated (the last wins).
      const bytes = encodeMessage({ ...m, user: "u", type: 1 });
      const twice = new Uint8Array([
        ...encodeMessage({ id: "first", content: "first", room: "first" }),
        ...bytes,
      ]);
      for (const b of [bytes, twice]) {
        assert.deepEqual(
          new Uint8Array(frameEchoMessage(decodeChatPost(b), nowMs)),
          new Uint8Array(
            frameMessage(echoMessage(fromBinary(MessageSchema, b), nowMs)),
          ),
        );
      }
    }
  }
  // In place, at an offset, the time changing from echo to echo.
  const post = decodeChatPost(encodeMessage({ id: "7", content: "ça" }));
  for (const nowMs of [5, 1_700_000_000_123, -1500, 5, 5, 1_700_000_001_000]) {
    const want = frameMessage(
      echoMessage({ id: "7", content: "ça", room: "" }, nowMs),
    );
    const out = new Uint8Array(want.length + 6).fill(0xee);
    assert.equal(planEcho(post, nowMs), want.length);
    writeEcho(out, 3);
    assert.deepEqual(out.subarray(3, 3 + want.length), new Uint8Array(want));
    assert.deepEqual(
      [...out.subarray(0, 3), ...out.subarray(-3)],
      Array(6).fill(0xee),
    );
  }
});

Deno.test("frameChatMessage() is byte for byte the reflective encoding for any strings, times and idempotency keys", () => {
  let seed = 11;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
  const pieces = ["a", "é", "€", "🚀", "\uD800", "\uDC00", "\u007F", "\u0080"];
  const str = () =>
    Array.from(
      { length: rand(3) === 0 ? 0 : rand(200) },
      () => pieces[rand(pieces.length)],
    ).join("");
  for (let i = 0; i < 300; i++) {
    const fields = {
      id: str(),
      user: str(),
      content: str(),
      room: str(),
      idempotencyKey: str(),
    };
    const nowMs = [0, 1, 999, 1000, 1_700_000_000_123, 2 ** 40, -5_000][
      rand(7)
    ];
    const type = rand(4) as MessageType;
    assert.deepEqual(
      new Uint8Array(
        frameChatMessage(
          fields.id,
          fields.user,
          fields.content,
          fields.room,
          nowMs,
          type,
          fields.idempotencyKey,
        ),
      ),
      new Uint8Array(frameMessage(encodeMessage({
        ...fields,
        timestamp: timestampFromMs(nowMs),
        type,
      }))),
      JSON.stringify({ fields, nowMs, type }),
    );
  }
});
