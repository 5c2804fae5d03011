/**
 * The edge against the gRPC-Web (grpc/grpc PROTOCOL-WEB.md) and Connect
 * (connectrpc.com/docs/protocol) specifications, as an independent client
 * sees it: the cases the other edge tests leave out.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { startCoreEdge } from "./fixtures/edge_stack.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import {
  grpcWebBody,
  readConnectStream,
  readGrpcWeb,
} from "./fixtures/edge_raw.ts";

const SEND = "/chat.ChatService/SendMessage";
const UPLOAD = "/chat.ChatService/UploadMessages";
const ORIGIN = "https://app.example";

const sendRequest = () =>
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "a", room: "r", content: "hi" }),
  );

Deno.test("edge: a 415 is readable cross-origin (CORS headers on the gRPC-Web fast path too) and names what is accepted in Accept-Post", async () => {
  await using stack = await startCoreEdge({ allowedOrigins: [ORIGIN] });
  const cases: [string, string, string[]][] = [
    // gRPC-Web types the edge does not serve (PROTOCOL-WEB.md allows +json).
    [SEND, "application/grpc-web+json", ["application/grpc-web-text"]],
    [SEND, "application/grpc-web-text+thrift", ["application/grpc-web"]],
    // No RPC type at all: a unary method's types.
    [SEND, "text/plain", ["application/json", "application/proto"]],
    [UPLOAD, "text/plain", ["application/connect+json"]],
    // A Connect codec connect-es does not take (Connect: "must 415").
    [SEND, "application/json; charset=latin1", ["application/json"]],
    // A Connect unary type on a streaming method.
    [UPLOAD, "application/json", ["application/connect+proto"]],
  ];
  for (const [path, type, accepted] of cases) {
    const res = await stack.fetch(stack.url + path, {
      method: "POST",
      headers: { "content-type": type, origin: ORIGIN },
      body: "x",
    });
    await res.body?.cancel();
    const what = `${path} ${type}`;
    assert.equal(res.status, 415, what);
    assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN, what);
    assert.match(
      res.headers.get("access-control-expose-headers") ?? "",
      /grpc-status/,
      what,
    );
    const acceptPost = (res.headers.get("accept-post") ?? "").split(/,\s*/);
    for (const a of accepted) assert.ok(acceptPost.includes(a), what);
  }
  // A unary method does not offer the streaming types, and the reverse.
  const unary = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: "x",
  });
  await unary.body?.cancel();
  assert.ok(!unary.headers.get("accept-post")?.includes("connect+"));
  // The gRPC-Web call itself still works.
  const ok = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", origin: ORIGIN },
    body: grpcWebBody([sendRequest()]),
  });
  await ok.body?.cancel();
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("accept-post"), null);
});

Deno.test("edge gRPC-Web: Accept: application/grpc-web-text gets a base64 answer to a binary request (unary and streamed); other Accepts get binary", async () => {
  await using stack = await startCoreEdge();
  const call = async (
    path: string,
    body: Uint8Array<ArrayBuffer>,
    headers: Record<string, string>,
  ) => {
    const res = await stack.fetch(stack.url + path, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", ...headers },
      body,
    });
    return { type: res.headers.get("content-type"), result: res };
  };
  // Unary: the whole answer at once.
  const unary = await call(SEND, grpcWebBody([sendRequest()]), {
    accept: "application/grpc-web-text",
  });
  assert.equal(unary.type, "application/grpc-web-text+proto");
  const text = await unary.result.text();
  assert.match(text, /^[A-Za-z0-9+/=]+$/);
  const r = await readGrpcWeb(
    new Response(text, { headers: { "content-type": unary.type! } }),
  );
  assert.equal(r.grpcStatus, 0, r.grpcMessage);
  assert.equal(r.messages.length, 1);
  // Server streaming: frames as they come, then the trailer at the deadline.
  const subscribe = toBinary(
    SubscribeRequestSchema,
    create(SubscribeRequestSchema, { room: "r", user: "b" }),
  );
  const stream = await call(
    "/chat.ChatService/SubscribeMessages",
    grpcWebBody([subscribe]),
    { accept: "application/grpc-web-text+proto", "grpc-timeout": "300m" },
  );
  assert.equal(stream.type, "application/grpc-web-text+proto");
  const s = await readGrpcWeb(stream.result);
  assert.equal(s.grpcStatus, 4, s.grpcMessage);
  assert.ok(s.messages.length >= 1);
  // Any other Accept (or none) keeps the binary answer.
  for (const accept of ["*/*", "application/grpc-web", undefined]) {
    const other = await call(
      SEND,
      grpcWebBody([sendRequest()]),
      accept ? { accept } : {},
    );
    assert.equal(other.type, "application/grpc-web+proto", String(accept));
    const o = await readGrpcWeb(other.result);
    assert.equal(o.grpcStatus, 0, o.grpcMessage);
  }
});

Deno.test("edge Connect: connect-protocol-version other than 1 is invalid_argument (unary 400, streaming end-stream); 1 or none is served", async () => {
  await using stack = await startCoreEdge();
  const json = JSON.stringify({ user: "a", room: "r", content: "hi" });
  const unary = (headers: Record<string, string>) =>
    stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: json,
    });
  for (const version of ["2", "v1", ""]) {
    const res = await unary({ "connect-protocol-version": version });
    assert.equal(res.status, 400, version);
    assert.equal(res.headers.get("content-type"), "application/json");
    const err = await res.json();
    assert.equal(err.code, "invalid_argument");
    assert.match(err.message, /connect-protocol-version must be "1"/);
  }
  const served: Record<string, string>[] = [
    { "connect-protocol-version": "1" },
    {},
  ];
  for (const headers of served) {
    const res = await unary(headers);
    assert.equal(res.status, 200);
    assert.match((await res.json()).messageId, /^msg_/);
  }
  const upload = await stack.fetch(stack.url + UPLOAD, {
    method: "POST",
    headers: {
      "content-type": "application/connect+json",
      "connect-protocol-version": "2",
    },
    body: encodeEnvelope(0, new TextEncoder().encode(json)),
  });
  assert.equal(upload.status, 200);
  const end = await readConnectStream(upload);
  assert.equal(end.end.error?.code, "invalid_argument");
  assert.equal(end.messages.length, 0);
});

Deno.test("edge Connect: a unary content type on the bidi method is 415 unimplemented, chunked over HTTP/1.1 or of declared length, not 505 or 413", async () => {
  await using stack = await startCoreEdge();
  const chat = stack.url + "/chat.ChatService/Chat";
  const chunked = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode("{}"));
      c.close();
    },
  });
  const big = new Uint8Array(11 * 1024 * 1024).fill(0x20);
  for (const body of [chunked, "{}", big]) {
    const res = await stack.fetch(chat, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    assert.equal(res.status, 415);
    assert.equal((await res.json()).code, "unimplemented");
  }
});
