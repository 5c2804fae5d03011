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

/**
 * Reads envelopes off a streamed body as they come, compressed ones
 * gunzipped, keeping their flags.
 */
function envelopeReader(res: Response) {
  const reader = res.body!.getReader();
  const parser = new EnvelopeParser({
    maxMessageBytes: 1 << 26,
    allowedFlags: FLAG_COMPRESSED | FLAG_TRAILER | FLAG_END_STREAM,
  });
  const ready: { flags: number; data: Uint8Array }[] = [];
  return {
    /** The next `n` envelopes. */
    async take(n: number) {
      while (ready.length < n) {
        const r = await reader.read();
        if (r.done) throw new Error(`body ended after ${ready.length}`);
        for (const e of parser.push(r.value)) {
          ready.push({
            flags: e.flags,
            data: e.flags & FLAG_COMPRESSED
              ? new Uint8Array(gunzipSync(e.data))
              : e.data,
          });
        }
      }
      return ready.splice(0, n);
    },
    cancel: () => reader.cancel(),
  };
}

/** One gRPC-Web SendMessage with `body` and extra `headers`. */
async function grpcWebSend(
  stack: CoreEdgeStack,
  body: Uint8Array<ArrayBuffer>,
  headers: Record<string, string> = {},
) {
  return await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", ...headers },
      body,
    }),
  );
}

/** Publishes `content` to `room` over plain gRPC-Web. */
async function publish(stack: CoreEdgeStack, content: string, room: string) {
  const r = await grpcWebSend(stack, encodeEnvelope(0, send(content, room)));
  assert.equal(r.grpcStatus, 0, r.grpcMessage);
}

Deno.test("edge gRPC-Web: a gzip-compressed request message is decompressed for the core", async () => {
  await using stack = await startCoreEdge();
  const r = await grpcWebSend(
    stack,
    encodeEnvelope(
      FLAG_COMPRESSED,
      new Uint8Array(gzipSync(send(BIG))),
    ),
    { "grpc-encoding": "gzip" },
  );
  assert.equal(r.grpcStatus, 0, r.grpcMessage);
  assert.equal(r.messages.length, 1);
});

for (
  const c of [
    {
      name: "gRPC-Web",
      type: "application/grpc-web+proto",
      accept: "grpc-accept-encoding",
      answer: "grpc-encoding",
    },
    {
      name: "Connect",
      type: "application/connect+proto",
      accept: "connect-accept-encoding",
      answer: "connect-content-encoding",
    },
  ]
) {
  Deno.test(`edge ${c.name}: streamed responses are gzipped per message with ${c.accept}`, async () => {
    await using stack = await startCoreEdge();
    const room = `gz-${c.name}`;
    const res = await stack.fetch(stack.url + SUBSCRIBE, {
      method: "POST",
      headers: { "content-type": c.type, [c.accept]: "gzip" },
      body: encodeEnvelope(
        0,
        toBinary(
          SubscribeRequestSchema,
          create(SubscribeRequestSchema, { user: "s", room }),
        ),
      ),
    });
    assert.equal(res.headers.get(c.answer), "gzip");
    const body = envelopeReader(res);
    try {
      // The welcome comes first: then the subscriber is in the room.
      const [welcome] = await body.take(1);
      assert.equal(welcome.flags, 0, "small messages stay uncompressed");
      await publish(stack, BIG, room);
      const [big] = await body.take(1);
      assert.equal(big.flags, FLAG_COMPRESSED);
      assert.equal(fromBinary(MessageSchema, big.data).content, BIG);
    } finally {
      await body.cancel();
    }
  });
}

Deno.test("edge gRPC-Web: a gzip bomb ends with RESOURCE_EXHAUSTED, an unknown encoding with UNIMPLEMENTED", async () => {
  await using stack = await startCoreEdge({ maxMessageBytes: 64 * 1024 });
  const bomb = new Uint8Array(gzipSync(new Uint8Array(50 * 1024 * 1024)));
  const r = await grpcWebSend(stack, encodeEnvelope(FLAG_COMPRESSED, bomb), {
    "grpc-encoding": "gzip",
  });
  assert.equal(r.grpcStatus, 8, r.grpcMessage);
  assert.match(r.grpcMessage, /larger than/);

  const u = await grpcWebSend(stack, encodeEnvelope(0, send("x")), {
    "grpc-encoding": "snappy",
  });
  assert.equal(u.grpcStatus, 12);
  assert.match(u.grpcMessage, /snappy/);
  assert.equal(u.headers.get("grpc-accept-encoding"), "gzip");

  // The compressed flag without grpc-encoding stays a protocol error.
  const f = await grpcWebSend(
    stack,
    encodeEnvelope(
      FLAG_COMPRESSED,
      new Uint8Array(gzipSync(send("x"))),
    ),
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

  // brotli runs in the background: gzip until it is ready, then br.
  let br = await curl(["--compressed", url]);
  for (let i = 0; i < 100 && !/content-encoding: br/.test(br.head); i++) {
    assert.match(br.head, /content-encoding: gzip/);
    await new Promise((r) => setTimeout(r, 20));
    br = await curl(["--compressed", url]);
  }
  assert.match(br.head, /content-encoding: br/);
  assert.equal(new TextDecoder().decode(br.body), source);
  const brOnly = await curl(["-H", "accept-encoding: br", url]);
  assert.match(brOnly.head, /content-encoding: br/);

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
