/**
 * Compression at the edge against the real core: gzip both ways for Connect
 * (content-encoding / connect-content-encoding) and gRPC-Web (grpc-encoding,
 * per-message flag), with connect-node's clients and raw frames; gzip bombs
 * stop at the message limit; the page's assets compressed once, with ETags.
 *
 * @module
 */
import assert from "node:assert/strict";
import { gunzipSync, gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import {
  ChatService,
  MessageSchema,
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { ASSETS } from "../edge/assets.ts";
import {
  encodeEnvelope,
  EnvelopeParser,
  FLAG_COMPRESSED,
  FLAG_END_STREAM,
  FLAG_TRAILER,
} from "../protocol/mod.ts";
import { type CoreEdgeStack, startCoreEdge } from "./fixtures/edge_stack.ts";
import { readGrpcWeb } from "./fixtures/edge_raw.ts";

const SEND = "/chat.ChatService/SendMessage";
const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";
const BIG = "compress me ".repeat(1000);

function send(content: string, room = "z"): Uint8Array {
  return toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "u", room, content }),
  );
}

/** Every envelope of a body, compressed ones gunzipped, with their flags. */
function envelopes(body: Uint8Array): { flags: number; data: Uint8Array }[] {
  const parser = new EnvelopeParser({
    maxMessageBytes: 1 << 26,
    allowedFlags: FLAG_COMPRESSED | FLAG_TRAILER | FLAG_END_STREAM,
  });
  return parser.push(body).map((e) => ({
    flags: e.flags,
    data: e.flags & FLAG_COMPRESSED
      ? new Uint8Array(gunzipSync(e.data))
      : e.data,
  }));
}

/** Reads a streaming body until `done` says so; cancels the rest. */
async function readUntil(
  res: Response,
  done: (all: { flags: number; data: Uint8Array }[]) => boolean,
) {
  const reader = res.body!.getReader();
  let bytes = new Uint8Array(0);
  try {
    while (true) {
      const r = await reader.read();
      if (r.done) break;
      const joined = new Uint8Array(bytes.length + r.value.length);
      joined.set(bytes);
      joined.set(r.value, bytes.length);
      bytes = joined;
      const all = tryEnvelopes(bytes);
      if (all && done(all)) return all;
    }
    return envelopes(bytes);
  } finally {
    await reader.cancel();
  }
}

function tryEnvelopes(bytes: Uint8Array) {
  try {
    return envelopes(bytes);
  } catch {
    return undefined;
  }
}

/** Publishes `content` to `room` over plain gRPC-Web. */
async function publish(stack: CoreEdgeStack, content: string, room: string) {
  const r = await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: encodeEnvelope(0, send(content, room)),
    }),
  );
  assert.equal(r.grpcStatus, 0, r.grpcMessage);
}

Deno.test("edge gRPC-Web: a gzip-compressed request message is decompressed for the core", async () => {
  await using stack = await startCoreEdge();
  const r = await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "grpc-encoding": "gzip",
      },
      body: encodeEnvelope(
        FLAG_COMPRESSED,
        new Uint8Array(gzipSync(send(BIG))),
      ),
    }),
  );
  assert.equal(r.grpcStatus, 0, r.grpcMessage);
  assert.equal(r.messages.length, 1);
});

Deno.test("edge gRPC-Web: responses are gzipped per message when grpc-accept-encoding allows", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(stack.url + SUBSCRIBE, {
    method: "POST",
    headers: {
      "content-type": "application/grpc-web+proto",
      "grpc-accept-encoding": "gzip",
    },
    body: encodeEnvelope(
      0,
      toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { user: "s", room: "gz" }),
      ),
    ),
  });
  assert.equal(res.headers.get("grpc-encoding"), "gzip");
  // The welcome message arrives first: then the subscriber is in the room.
  const welcome = await readUntilOne(res);
  const rest = readUntil(res, (all) => all.length >= 1);
  await publish(stack, BIG, "gz");
  const [big] = await rest;
  assert.equal(welcome.flags, 0, "small messages stay uncompressed");
  assert.equal(big.flags, FLAG_COMPRESSED);
  assert.equal(fromBinary(MessageSchema, big.data).content, BIG);
});

/** The first envelope of a response, leaving the body readable. */
async function readUntilOne(res: Response) {
  const reader = res.body!.getReader();
  let bytes = new Uint8Array(0);
  while (true) {
    const r = await reader.read();
    assert.ok(!r.done, "stream ended before the first message");
    const joined = new Uint8Array(bytes.length + r.value.length);
    joined.set(bytes);
    joined.set(r.value, bytes.length);
    bytes = joined;
    const all = tryEnvelopes(bytes);
    if (all && all.length > 0) {
      reader.releaseLock();
      return all[0];
    }
  }
}

Deno.test("edge gRPC-Web: a gzip bomb ends with RESOURCE_EXHAUSTED, an unknown encoding with UNIMPLEMENTED", async () => {
  await using stack = await startCoreEdge({ maxMessageBytes: 64 * 1024 });
  const bomb = new Uint8Array(gzipSync(new Uint8Array(50 * 1024 * 1024)));
  const r = await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "grpc-encoding": "gzip",
      },
      body: encodeEnvelope(FLAG_COMPRESSED, bomb),
    }),
  );
  assert.equal(r.grpcStatus, 8, r.grpcMessage);
  assert.match(r.grpcMessage, /larger than/);

  const u = await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "grpc-encoding": "snappy",
      },
      body: encodeEnvelope(0, send("x")),
    }),
  );
  assert.equal(u.grpcStatus, 12);
  assert.match(u.grpcMessage, /snappy/);
  assert.equal(u.headers.get("grpc-accept-encoding"), "gzip");

  // The compressed flag without grpc-encoding stays a protocol error.
  const f = await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: encodeEnvelope(
        FLAG_COMPRESSED,
        new Uint8Array(gzipSync(send("x"))),
      ),
    }),
  );
  assert.equal(f.grpcStatus, 3, f.grpcMessage);
});

for (const protocol of ["Connect", "gRPC-Web"] as const) {
  Deno.test(`edge ${protocol}: connect-node with gzip both ways sends and receives big messages`, async () => {
    await using stack = await startCoreEdge();
    const options = {
      baseUrl: stack.url,
      httpVersion: "1.1" as const,
      useBinaryFormat: true,
      sendCompression: compressionGzip,
      acceptCompression: [compressionGzip],
    };
    const transport = protocol === "Connect"
      ? createConnectTransport(options)
      : createGrpcWebTransport(options);
    const client = createClient(ChatService, transport);
    const ctl = new AbortController();
    const stream = client.subscribeMessages(
      { user: "s", room: "big" },
      { signal: ctl.signal },
    )[Symbol.asyncIterator]();
    try {
      const welcome = await stream.next();
      assert.match(welcome.value.content, /Welcome/);
      const res = await client.sendMessage({
        user: "u",
        room: "big",
        content: BIG,
      });
      assert.match(res.messageId, /^msg_/);
      const got = await stream.next();
      assert.equal(got.value.content, BIG);
    } finally {
      ctl.abort();
      await stream.return?.().catch(() => {});
    }
  });
}

Deno.test("edge Connect: streaming responses are gzipped per message with connect-accept-encoding", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(stack.url + SUBSCRIBE, {
    method: "POST",
    headers: {
      "content-type": "application/connect+proto",
      "connect-accept-encoding": "gzip",
    },
    body: encodeEnvelope(
      0,
      toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { user: "s", room: "cz" }),
      ),
    ),
  });
  assert.equal(res.headers.get("connect-content-encoding"), "gzip");
  await readUntilOne(res);
  const rest = readUntil(res, (all) => all.length >= 1);
  await publish(stack, BIG, "cz");
  const [big] = await rest;
  assert.equal(big.flags, FLAG_COMPRESSED);
  assert.equal(fromBinary(MessageSchema, big.data).content, BIG);
});

/** Runs curl; returns the response head and the raw body. */
async function curl(args: string[], stdin?: Uint8Array) {
  const child = new Deno.Command("curl", {
    args: ["-s", "-D", "/dev/stderr", ...args],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  const head = new TextDecoder().decode(out.stderr).toLowerCase();
  return { head, body: out.stdout };
}

Deno.test("edge Connect: unary gzip request, gzip response, and a bomb, through curl", async () => {
  await using stack = await startCoreEdge({ maxMessageBytes: 64 * 1024 });
  const ok = await curl(
    [
      "-H",
      "content-type: application/json",
      "-H",
      "content-encoding: gzip",
      "--data-binary",
      "@-",
      stack.url + SEND,
    ],
    new Uint8Array(
      gzipSync(JSON.stringify({ user: "u", room: "r", content: BIG })),
    ),
  );
  assert.match(ok.head, /^http\/1.1 200/);
  assert.match(
    JSON.parse(new TextDecoder().decode(ok.body)).messageId,
    /^msg_/,
  );

  const bomb = await curl([
    "-H",
    "content-type: application/proto",
    "-H",
    "content-encoding: gzip",
    "--data-binary",
    "@-",
    stack.url + SEND,
  ], new Uint8Array(gzipSync(new Uint8Array(50 * 1024 * 1024))));
  assert.equal(
    JSON.parse(new TextDecoder().decode(bomb.body)).code,
    "resource_exhausted",
  );

  const br = await curl([
    "-H",
    "content-type: application/json",
    "-H",
    "content-encoding: br",
    "--data-binary",
    "{}",
    stack.url + SEND,
  ]);
  const refused = JSON.parse(new TextDecoder().decode(br.body));
  assert.equal(refused.code, "unimplemented");
  assert.match(refused.message, /supported encodings are gzip/);
});

Deno.test("edge assets: gzip and br once, identity otherwise, ETag per variant and 304", async () => {
  await using stack = await startCoreEdge();
  const url = stack.url + "/app.js";
  const source = ASSETS["/app.js"].body;
  const plain = await curl([url]);
  assert.doesNotMatch(plain.head, /\ncontent-encoding:/);
  assert.equal(new TextDecoder().decode(plain.body), source);
  const etag = /etag: (.*)\r/.exec(plain.head)![1];

  const gz = await curl(["-H", "accept-encoding: gzip", url]);
  assert.match(gz.head, /content-encoding: gzip/);
  assert.match(gz.head, /vary: accept-encoding/);
  assert.ok(gz.body.length < source.length / 2, `${gz.body.length}`);
  assert.equal(new TextDecoder().decode(gunzipSync(gz.body)), source);
  const gzEtag = /etag: (.*)\r/.exec(gz.head)![1];
  assert.notEqual(gzEtag, etag);

  const br = await curl(["--compressed", url]);
  assert.match(br.head, /content-encoding: br/);
  assert.equal(new TextDecoder().decode(br.body), source);

  // Compressed once: the same bytes again.
  const again = await curl(["-H", "accept-encoding: gzip", url]);
  assert.deepEqual(again.body, gz.body);

  for (const tag of [etag, gzEtag, `W/${gzEtag}`]) {
    const cached = await curl([
      "-H",
      "accept-encoding: gzip",
      "-H",
      `if-none-match: ${tag}`,
      url,
    ]);
    assert.match(cached.head, /^http\/1.1 304/, tag);
    assert.equal(cached.body.length, 0);
  }
});
