/**
 * gRPC-Web text (base64) and raw binary gRPC-Web through the edge with plain
 * fetch: streamed base64 chunks, padding between frames, client streaming
 * and bidi over a streamed request body, against the real core.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  MessageSchema,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  SubscribeRequestSchema,
  UploadResponseSchema,
} from "../gen/chat_pb.ts";
import {
  Base64Decoder,
  encodeBase64,
  encodeEnvelope,
  EnvelopeParser,
  FLAG_TRAILER,
} from "../protocol/mod.ts";
import { startCoreEdge, waitUntil } from "./fixtures/edge_stack.ts";
import { grpcWebBody, pushBody, readGrpcWeb } from "./fixtures/edge_raw.ts";

const TEXT = { "content-type": "application/grpc-web-text", "x-grpc-web": "1" };
const BINARY = {
  "content-type": "application/grpc-web+proto",
  "x-grpc-web": "1",
};
const enc = new TextEncoder();

const chatMessage = (content: string, room = "up") =>
  toBinary(MessageSchema, create(MessageSchema, { user: "tx", room, content }));

Deno.test("edge grpc-web-text: unary SendMessage in base64 both ways", async () => {
  await using stack = await startCoreEdge();
  const req = toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "a", room: "r", content: "hi" }),
  );
  const res = await stack.fetch(`${stack.url}/chat.ChatService/SendMessage`, {
    method: "POST",
    headers: TEXT,
    body: grpcWebBody([req], true),
  });
  assert.equal(
    res.headers.get("content-type"),
    "application/grpc-web-text+proto",
  );
  const r = await readGrpcWeb(res);
  assert.equal(r.grpcStatus, 0);
  assert.equal(r.messages.length, 1);
  assert.match(
    fromBinary(SendMessageResponseSchema, r.messages[0]).messageId,
    /^msg_\d+$/,
  );
});

Deno.test("edge grpc-web-text: UploadMessages from streamed base64 chunks with padding between frames", async () => {
  await using stack = await startCoreEdge();
  const src = pushBody();
  const res = stack.fetch(`${stack.url}/chat.ChatService/UploadMessages`, {
    method: "POST",
    headers: TEXT,
    body: src.body,
    duplex: "half",
  } as RequestInit);
  // Each frame base64-encoded on its own ("...=" padding mid-body), and the
  // text split at awkward offsets across chunks.
  const text = ["one", "two!", "three"].map((c) =>
    encodeBase64(encodeEnvelope(0, chatMessage(c)))
  ).join("");
  assert.match(text.slice(0, -2), /=/);
  for (let i = 0; i < text.length; i += 7) {
    src.push(enc.encode(text.slice(i, i + 7)));
    await new Promise((r) => setTimeout(r, 1));
  }
  src.end();
  const r = await readGrpcWeb(await res);
  assert.equal(r.grpcStatus, 0, r.grpcMessage);
  const reply = fromBinary(UploadResponseSchema, r.messages[0]);
  assert.equal(reply.messageCount, 3);
  assert.equal(reply.success, true);
});

Deno.test("edge grpc-web-text: server stream arrives as independently padded base64 frames", async () => {
  await using stack = await startCoreEdge();
  const ctl = new AbortController();
  const req = toBinary(
    SubscribeRequestSchema,
    create(SubscribeRequestSchema, { room: "b64", user: "t" }),
  );
  const res = await stack.fetch(
    `${stack.url}/chat.ChatService/SubscribeMessages`,
    {
      method: "POST",
      headers: TEXT,
      body: grpcWebBody([req], true),
      signal: ctl.signal,
    },
  );
  const reader = res.body!.getReader();
  const first = new TextDecoder().decode((await reader.read()).value!);
  // A complete base64 unit per frame: the browser can decode it right away.
  assert.equal(first.length % 4, 0);
  const d = new Base64Decoder();
  const [env] = new EnvelopeParser({
    maxMessageBytes: 1 << 20,
    allowedFlags: FLAG_TRAILER,
  }).push(d.push(first));
  assert.equal(
    fromBinary(MessageSchema, env.data).content,
    "Welcome to room b64, t!",
  );
  ctl.abort();
  await reader.cancel().catch(() => {});
  await waitUntil(
    () => stack.core.snapshot().subscribers === 0,
    3000,
    "unsubscribe",
  );
});

Deno.test("edge gRPC-Web binary: bidi Chat over a streamed request body (HTTP/1.1, --http1-bidi allow) echoes each message in turn", async () => {
  await using stack = await startCoreEdge({ http1Bidi: "allow" });
  const src = pushBody();
  src.push(grpcWebBody([chatMessage("ping 1", "bidi")]));
  const res = await stack.fetch(`${stack.url}/chat.ChatService/Chat`, {
    method: "POST",
    headers: BINARY,
    body: src.body,
    duplex: "half",
  } as RequestInit);
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const parser = new EnvelopeParser({
    maxMessageBytes: 1 << 20,
    allowedFlags: FLAG_TRAILER,
  });
  const frames: { flags: number; data: Uint8Array }[] = [];
  const nextFrame = async () => {
    while (frames.length === 0) {
      const r = await reader.read();
      if (r.done) throw new Error("response ended early");
      frames.push(...parser.push(r.value));
    }
    return frames.shift()!;
  };
  assert.equal(
    fromBinary(MessageSchema, (await nextFrame()).data).content,
    "Echo: ping 1",
  );
  // The second message is written only after the first echo came back.
  src.push(grpcWebBody([chatMessage("ping 2", "bidi")]));
  assert.equal(
    fromBinary(MessageSchema, (await nextFrame()).data).content,
    "Echo: ping 2",
  );
  src.end();
  const trailer = await nextFrame();
  assert.equal(trailer.flags, FLAG_TRAILER);
  assert.match(new TextDecoder().decode(trailer.data), /grpc-status: 0\r\n/);
  assert.equal((await reader.read()).done, true);
});
