/**
 * Hostile and broken input to the edge: every case gets a protocol-shaped
 * error and the edge keeps serving afterwards.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { startCoreEdge, startEdge, waitUntil } from "./fixtures/edge_stack.ts";
import {
  concat,
  grpcWebBody,
  readConnectStream,
  readGrpcWeb,
} from "./fixtures/edge_raw.ts";

const SEND = "/chat.ChatService/SendMessage";
const GRPC_WEB = { "content-type": "application/grpc-web+proto" };
const GRPC_WEB_TEXT = { "content-type": "application/grpc-web-text" };
const enc = new TextEncoder();
const good = () =>
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "a", room: "r", content: "ok" }),
  );

async function post(
  stack: { url: string; fetch: typeof fetch },
  headers: Record<string, string>,
  body: BodyInit,
) {
  return await stack.fetch(stack.url + SEND, { method: "POST", headers, body });
}

/** After a bad request, a good one must still work. */
async function stillServes(stack: { url: string; fetch: typeof fetch }) {
  const r = await readGrpcWeb(
    await post(stack, GRPC_WEB, grpcWebBody([good()])),
  );
  assert.equal(r.grpcStatus, 0, r.grpcMessage);
}

Deno.test("edge rejects unknown content types with 415", async () => {
  await using stack = await startCoreEdge();
  for (
    const type of [
      "text/plain",
      "application/grpc-web+json",
      "application/xml",
    ]
  ) {
    const res = await post(stack, { "content-type": type }, "x");
    await res.body?.cancel();
    assert.equal(res.status, 415, type);
  }
  await stillServes(stack);
});

Deno.test("edge gRPC-Web: truncated frames end with INVALID_ARGUMENT", async () => {
  await using stack = await startCoreEdge();
  const frame = encodeEnvelope(0, good());
  for (const cut of [3, frame.length - 1]) {
    const r = await readGrpcWeb(
      await post(stack, GRPC_WEB, frame.slice(0, cut)),
    );
    assert.equal(r.httpStatus, 200);
    assert.equal(r.grpcStatus, 3, `cut ${cut}`);
    assert.match(r.grpcMessage, /ended inside a frame/);
  }
  await stillServes(stack);
});

Deno.test("edge gRPC-Web: compressed and trailer flags in a request are refused", async () => {
  await using stack = await startCoreEdge();
  for (const flags of [0x01, 0x80, 0x7f]) {
    const r = await readGrpcWeb(
      await post(stack, GRPC_WEB, encodeEnvelope(flags, good())),
    );
    assert.equal(r.grpcStatus, 3, `flags ${flags}`);
    assert.match(r.grpcMessage, /flags/);
  }
  await stillServes(stack);
});

Deno.test("edge gRPC-Web: a message over the limit is RESOURCE_EXHAUSTED before it is read", async () => {
  await using stack = await startCoreEdge({ maxMessageBytes: 1024 });
  // The header alone declares 1 GiB; the edge must answer without the body.
  const header = new Uint8Array([0, 0x40, 0, 0, 0]);
  const r = await readGrpcWeb(await post(stack, GRPC_WEB, header));
  assert.equal(r.grpcStatus, 8);
  const big = await readGrpcWeb(
    await post(stack, GRPC_WEB, grpcWebBody([new Uint8Array(2048)])),
  );
  assert.equal(big.grpcStatus, 8);
  assert.match(big.grpcMessage, /exceeds the limit of 1024/);
  await stillServes(stack);
});

Deno.test("edge Connect: a body over the limit is refused as resource_exhausted", async () => {
  await using stack = await startCoreEdge({ maxMessageBytes: 1024 });
  const res = await post(
    stack,
    { "content-type": "application/json" },
    JSON.stringify({ user: "a", room: "r", content: "x".repeat(4096) }),
  );
  assert.equal(res.status, 429);
  assert.equal((await res.json()).code, "resource_exhausted");
});

Deno.test("edge grpc-web-text: bad base64 ends with INVALID_ARGUMENT", async () => {
  await using stack = await startCoreEdge();
  for (const bad of ["AAAA*AAA", "A===", "AAAAA", "AA=A"]) {
    const r = await readGrpcWeb(await post(stack, GRPC_WEB_TEXT, bad));
    assert.equal(r.grpcStatus, 3, bad);
    assert.match(r.grpcMessage, /base64/);
  }
  await stillServes(stack);
});

Deno.test("edge Connect: malformed JSON is invalid_argument, malformed binary is connect-es's internal", async () => {
  await using stack = await startCoreEdge();
  const json = await post(
    stack,
    { "content-type": "application/json" },
    "{not json",
  );
  assert.equal(json.status, 400);
  assert.equal((await json.json()).code, "invalid_argument");
  const bin = await post(
    stack,
    { "content-type": "application/proto" },
    new Uint8Array([0x0a, 0xff]),
  );
  // connect-es classifies a binary parse failure as internal (HTTP 500).
  assert.equal(bin.status, 500);
  const err = await bin.json();
  assert.equal(err.code, "internal");
  assert.match(err.message, /parse binary/);
  await stillServes(stack);
});

Deno.test("edge gRPC-Web: unknown method is UNIMPLEMENTED from the core, malformed grpc-timeout is refused", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(`${stack.url}/chat.ChatService/Nope`, {
    method: "POST",
    headers: GRPC_WEB,
    body: grpcWebBody([new Uint8Array()]),
  });
  const r = await readGrpcWeb(res);
  assert.equal(r.grpcStatus, 12);
  // Trailers-only: the status is in the headers and the body is empty.
  assert.equal(r.trailers, undefined);
  assert.equal(r.messages.length, 0);
  const t = await readGrpcWeb(
    await post(
      stack,
      { ...GRPC_WEB, "grpc-timeout": "soon" },
      grpcWebBody([good()]),
    ),
  );
  assert.equal(t.grpcStatus, 3);
});

Deno.test("edge gRPC-Web: garbage request bytes inside a valid frame reach the core as INVALID_ARGUMENT or INTERNAL", async () => {
  await using stack = await startCoreEdge();
  const junk = new Uint8Array(64).map((_, i) => (i * 37 + 11) & 255);
  const r = await readGrpcWeb(
    await post(stack, GRPC_WEB, concat([encodeEnvelope(0, junk)])),
  );
  assert.ok([3, 13].includes(r.grpcStatus), `status ${r.grpcStatus}`);
  assert.ok(enc.encode(r.grpcMessage).length > 0);
  await stillServes(stack);
});

Deno.test("edge survives 60 random bodies over gRPC-Web binary and text with a status for each", async () => {
  await using stack = await startCoreEdge({ maxMessageBytes: 4096 });
  let seed = 42;
  const rand = () =>
    (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
  for (let i = 0; i < 60; i++) {
    const text = i % 2 === 1;
    const n = Math.floor(rand() * 40);
    const body = text
      ? enc.encode(
        Array.from({ length: n }, () =>
          alphabet[Math.floor(rand() * alphabet.length)]).join(""),
      )
      : Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
    const r = await readGrpcWeb(
      await post(stack, text ? GRPC_WEB_TEXT : GRPC_WEB, body),
    );
    assert.equal(r.httpStatus, 200);
    assert.ok(Number.isInteger(r.grpcStatus), `body ${i} got no grpc-status`);
  }
  await stillServes(stack);
});

Deno.test("edge ends a stream with RESOURCE_EXHAUSTED when the core sends a message over the limit", async () => {
  await using big = await startCoreEdge();
  await using small = startEdge(`http://127.0.0.1:${big.core.port}`, {
    maxMessageBytes: 1024,
  });
  const sub = toBinary(
    SubscribeRequestSchema,
    create(SubscribeRequestSchema, { room: "big", user: "s" }),
  );
  const res = await small.fetch(
    `${small.url}/chat.ChatService/SubscribeMessages`,
    {
      method: "POST",
      headers: GRPC_WEB,
      body: grpcWebBody([sub]),
    },
  );
  await waitUntil(
    () => big.core.snapshot().subscribers === 1,
    3000,
    "subscriber",
  );
  const sent = await readGrpcWeb(
    await big.fetch(big.url + SEND, {
      method: "POST",
      headers: GRPC_WEB,
      body: grpcWebBody([
        toBinary(
          SendMessageRequestSchema,
          create(SendMessageRequestSchema, {
            user: "a",
            room: "big",
            content: "x".repeat(2000),
          }),
        ),
      ]),
    }),
  );
  assert.equal(sent.grpcStatus, 0);
  const r = await readGrpcWeb(res);
  assert.equal(r.messages.length, 1); // the welcome fits
  assert.equal(r.grpcStatus, 8);
  assert.match(r.grpcMessage, /exceeds the limit of 1024/);
  await waitUntil(
    () => big.core.snapshot().subscribers === 0,
    3000,
    "unsubscribe",
  );
});

Deno.test("edge Connect: JSON with invalid UTF-8 in a string is invalid_argument, unary and streaming", async () => {
  await using stack = await startCoreEdge();
  // {"user":"a","room":"r","content":"<0xff 0xfe>"}
  const json = concat([
    enc.encode('{"user":"a","room":"r","content":"'),
    new Uint8Array([0xff, 0xfe]),
    enc.encode('"}'),
  ]);
  const unary = await post(stack, { "content-type": "application/json" }, json);
  assert.equal(unary.status, 400);
  const err = await unary.json();
  assert.equal(err.code, "invalid_argument");
  const streaming = await stack.fetch(
    `${stack.url}/chat.ChatService/SubscribeMessages`,
    {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: encodeEnvelope(0, json),
    },
  );
  const { end } = await readConnectStream(streaming);
  assert.equal(end.error?.code, "invalid_argument");
  // Valid UTF-8 beyond ASCII is still fine.
  const ok = await post(
    stack,
    { "content-type": "application/json" },
    JSON.stringify({ user: "a", room: "r", content: "h\u00e9llo \u{1f600}" }),
  );
  assert.equal(ok.status, 200, await ok.clone().text());
  await ok.body?.cancel();
  await stillServes(stack);
});

for (const value of ["597H", "99999999H", "2400000M"]) {
  Deno.test(`edge gRPC-Web: grpc-timeout ${value} (beyond the timer's range) means no deadline, not DEADLINE_EXCEEDED`, async () => {
    await using stack = await startCoreEdge();
    const r = await readGrpcWeb(
      await post(
        stack,
        { ...GRPC_WEB, "grpc-timeout": value },
        grpcWebBody([good()]),
      ),
    );
    assert.equal(r.grpcStatus, 0, r.grpcMessage);
    assert.equal(r.messages.length, 1);
  });
}

for (const value of ["2147483648", "9999999999"]) {
  Deno.test(`edge Connect: connect-timeout-ms ${value} (2^31 or more) means no deadline, not deadline_exceeded`, async () => {
    await using stack = await startCoreEdge();
    const res = await post(
      stack,
      { "content-type": "application/json", "connect-timeout-ms": value },
      JSON.stringify({ user: "a", room: "r", content: "far deadline" }),
    );
    assert.equal(res.status, 200, await res.clone().text());
    assert.match((await res.json()).messageId, /^msg_/);
  });
}
