/**
 * The direct unary path (server/grpcjs/direct_unary.ts): it is really taken
 * with this grpc-js version (bound and injected servers), SendMessage on it
 * answers and broadcasts the same bytes the reflective encoder would,
 * compressed calls fall back to grpc-js, and bad request bytes get the
 * statuses the module documents with nothing broadcast. Correctness only,
 * no timing.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  MessageSchema,
  MessageType,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { createChatClient } from "../client/rpc.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { serverDefinition } from "../server/grpc/definition.ts";
import {
  type DirectUnaryMethod,
  enableDirectUnary,
} from "../server/grpcjs/direct_unary.ts";
import { frameMessage } from "../server/grpc/framing.ts";
import { listenWithGoawayGuard } from "../server/grpcjs/goaway_guard.ts";
import {
  encodeMessage,
  frameChatMessage,
  frameSendResponse,
  frameStored,
} from "../server/grpc/messages.ts";
import { encodeSendResponse } from "../server/grpc/send_message.ts";
import { type CoreFixture, startCore, take } from "./support/core.ts";

const bytes = (b: Uint8Array) => new Uint8Array(b);
const encodeRequest = (user: string, content: string, room: string) =>
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user, content, room }),
  );

/** A unary call whose request and response are raw bytes. */
function unaryBytes(
  client: grpc.Client,
  path: string,
  request: Uint8Array,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (x: Uint8Array) => Buffer.from(x),
      (b: Buffer) => b,
      request,
      new grpc.Metadata(),
      {},
      (err, res) => err ? reject(err) : resolve(res!),
    );
  });
}

/** A grpc-js subscription to `room` that yields each broadcast's bytes. */
function subscribeBytes(client: grpc.Client, room: string, user: string) {
  return client.makeServerStreamRequest(
    chatPaths.SubscribeMessages,
    (x: Uint8Array) => Buffer.from(x),
    (b: Buffer) => b,
    toBinary(
      SubscribeRequestSchema,
      create(SubscribeRequestSchema, { room, user }),
    ),
    new grpc.Metadata(),
  );
}

const ECHO_PATH = "/test.Echo/Echo";
const identity = (b: Buffer) => b;

interface Recorded {
  direct: string[];
  grpcJs: string[];
}

/**
 * A bare grpc-js server with SendMessage (records "grpc-js") and an
 * unregistered echo method, listening on port 0 either with bindAsync or
 * through the GOAWAY guard's connection injector.
 */
async function startBare(via: "bind" | "inject", seen: Recorded) {
  const server = new grpc.Server({ "grpc.enable_channelz": 0 });
  server.addService(serverDefinition, {
    SendMessage(
      call: grpc.ServerUnaryCall<{ content: string }, unknown>,
      callback: grpc.sendUnaryData<Uint8Array>,
    ) {
      seen.grpcJs.push(call.request.content);
      callback(null, encodeSendResponse("grpcjs", 1000));
    },
  });
  server.addService({
    Echo: {
      path: ECHO_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  }, {
    Echo(
      call: grpc.ServerUnaryCall<Buffer, Buffer>,
      callback: grpc.sendUnaryData<Buffer>,
    ) {
      callback(null, Buffer.concat([Buffer.from("echo:"), call.request]));
    },
  });
  let port: number;
  let close = () => {};
  if (via === "bind") {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        "127.0.0.1:0",
        grpc.ServerCredentials.createInsecure(),
        (err, p) => err ? reject(err) : resolve(p),
      )
    );
  } else {
    const guarded = await listenWithGoawayGuard(server, "127.0.0.1", 0);
    port = guarded.port;
    close = () => void guarded.close();
  }
  const method: DirectUnaryMethod = (
    request,
    _headers,
    _session,
    call,
  ) => {
    const req = fromBinary(SendMessageRequestSchema, request);
    seen.direct.push(req.content);
    call.reply(undefined, encodeSendResponse(`direct_${req.content}`, 2000));
  };
  const patched = enableDirectUnary(
    server,
    new Map([[chatPaths.SendMessage, method]]),
    { maxMessageBytes: 1 << 20 },
  );
  return {
    port,
    patched,
    [Symbol.dispose]() {
      close();
      server.forceShutdown();
    },
  };
}

for (const via of ["bind", "inject"] as const) {
  Deno.test(`enableDirectUnary() patches a grpc-js server (${via}) and serves the registered path only`, async () => {
    const seen: Recorded = { direct: [], grpcJs: [] };
    using bare = await startBare(via, seen);
    assert.equal(bare.patched, 1, "grpc-js internals changed: fallback");
    const client = createChatClient(`127.0.0.1:${bare.port}`);
    try {
      const res = await client.sendMessage({
        user: "u",
        content: "one",
        room: "r",
      });
      assert.equal(res.messageId, "direct_one");
      assert.equal(timestampMs(res.timestamp!), 2000);
      assert.deepEqual(seen, { direct: ["one"], grpcJs: [] });

      const echo = await unaryBytes(client.raw, ECHO_PATH, Buffer.from("hi"));
      assert.equal(echo.toString(), "echo:hi");
      assert.deepEqual(seen, { direct: ["one"], grpcJs: [] });
    } finally {
      client.close();
    }
  });
}

Deno.test("enableDirectUnary() leaves a gzip-compressed call to grpc-js", async () => {
  const seen: Recorded = { direct: [], grpcJs: [] };
  using bare = await startBare("bind", seen);
  assert.equal(bare.patched, 1);
  const client = createChatClient(`127.0.0.1:${bare.port}`, {
    "grpc.default_compression_algorithm": 2,
    "grpc.default_compression_level": 2,
  });
  try {
    const res = await client.sendMessage({
      user: "u",
      content: "zipped".repeat(100),
      room: "r",
    });
    assert.equal(res.messageId, "grpcjs");
    assert.deepEqual(seen, { direct: [], grpcJs: ["zipped".repeat(100)] });
  } finally {
    client.close();
  }
});

Deno.test("enableDirectUnary() patches nothing without grpc-js's http2Servers", () => {
  const server = new grpc.Server();
  const methods = new Map<string, DirectUnaryMethod>();
  // Not listening yet: no http2 server to patch.
  assert.equal(enableDirectUnary(server, methods, { maxMessageBytes: 1 }), 0);
  assert.equal(
    enableDirectUnary({} as grpc.Server, methods, { maxMessageBytes: 1 }),
    0,
  );
});

/**
 * Posts on SendMessage (raw bytes) and checks the response and the
 * broadcast a subscriber of the room gets, byte for byte.
 */
async function postAndCompare(
  f: CoreFixture,
  client: grpc.Client,
  user: string,
  content: string,
  room: string,
) {
  const sub = subscribeBytes(f.newClient().raw, room, "watcher");
  const [welcome] = await take<Buffer>(sub, 1);
  const { epoch, offset: last } = fromBinary(MessageSchema, welcome);
  const before = Date.now();
  const raw = await unaryBytes(
    client,
    chatPaths.SendMessage,
    encodeRequest(user, content, room),
  );
  const res = fromBinary(SendMessageResponseSchema, raw);
  assert.match(res.messageId, /^msg_\d+$/);
  const nowMs = timestampMs(res.timestamp!);
  assert.ok(nowMs >= before && nowMs <= Date.now(), `timestamp ${nowMs}`);
  assert.equal(res.offset, last + 1n);
  assert.deepEqual(
    bytes(raw),
    encodeSendResponse(res.messageId, nowMs, Number(res.offset)),
  );

  const [broadcast] = await take<Buffer>(sub, 1);
  assert.deepEqual(
    bytes(broadcast),
    encodeMessage({
      id: res.messageId,
      user,
      content,
      room,
      timestamp: timestampFromMs(nowMs),
      type: MessageType.CHAT,
      offset: res.offset,
      epoch,
    }),
  );
  sub.cancel();
}

for (const goawayGuard of [true, false]) {
  Deno.test(`SendMessage (goawayGuard: ${goawayGuard}) answers msg_N and broadcasts encodeMessage()'s bytes`, async () => {
    await using f = await startCore({ goawayGuard });
    await postAndCompare(f, f.client.raw, "ann", "hello", "r");
    await postAndCompare(f, f.client.raw, "zoë", "é🚀".repeat(80), "général");

    // The core's streaming RPCs still work on the patched server.
    const sub = f.client.subscribeMessages({ room: "up", user: "w" });
    await take(sub, 1);
    const count = await new Promise<number>((resolve, reject) => {
      const call = f.client.uploadMessages((err, res) =>
        err ? reject(err) : resolve(res!.messageCount)
      );
      call.write({ id: "a", user: "u", room: "up", content: "uploaded" });
      call.end();
    });
    assert.equal(count, 1);
    const [m] = await take(sub, 1);
    assert.equal(m.content, "uploaded");
    sub.cancel();
  });
}

Deno.test("SendMessage with gzip compression is served by grpc-js and broadcast alike", async () => {
  await using f = await startCore();
  const zipped = f.newClient({
    "grpc.default_compression_algorithm": 2,
    "grpc.default_compression_level": 2,
  });
  await postAndCompare(f, zipped.raw, "gus", "z".repeat(5000), "r");
});

Deno.test("frameChatMessage(), frameStored() and encodeSendResponse() are byte for byte protobuf-es's", () => {
  const long = "ü€𝄞x".repeat(40); // > 127 bytes: a two-byte length
  const cases = [
    ["msg_1", "ann", "hi", "r"],
    ["msg_123456", "zoë", long, "général"],
    ["", "", "", ""],
    [long, long, "c", long],
  ];
  const times = [0, 1, 999, 1000, 1_700_000_000_000, 1_700_000_000_123];
  const offsets = [0, 1, 127, 128, 16_383, 16_384, 2 ** 32, 2 ** 53 - 1];
  const epochs = ["", "0123456789abcdef", "é"];
  for (const nowMs of times) {
    for (const [id, user, content, room] of cases) {
      const framed = frameChatMessage(id, user, content, room, nowMs);
      const fields = {
        id,
        user,
        content,
        room,
        timestamp: timestampFromMs(nowMs),
        type: MessageType.CHAT,
      };
      assert.deepEqual(
        bytes(framed),
        bytes(frameMessage(encodeMessage(fields))),
        `message ${id} at ${nowMs}`,
      );
      for (const offset of offsets) {
        const epoch = epochs[offset % epochs.length];
        assert.deepEqual(
          bytes(frameStored(framed.subarray(5), offset, epoch)),
          bytes(frameMessage(encodeMessage({
            ...fields,
            offset: BigInt(offset),
            epoch,
          }))),
          `stored ${id} at ${nowMs}, offset ${offset}`,
        );
        assert.deepEqual(
          encodeSendResponse(id, nowMs, offset),
          toBinary(
            SendMessageResponseSchema,
            create(SendMessageResponseSchema, {
              messageId: id,
              timestamp: timestampFromMs(nowMs),
              offset: BigInt(offset),
            }),
          ),
          `response ${id} at ${nowMs}, offset ${offset}`,
        );
        assert.deepEqual(
          bytes(frameSendResponse(id, nowMs, offset)),
          bytes(frameMessage(encodeSendResponse(id, nowMs, offset))),
          `framed response ${id} at ${nowMs}, offset ${offset}`,
        );
      }
    }
  }
  assert.deepEqual(
    bytes(frameSendResponse("msg_9", -1500, 300)),
    bytes(frameMessage(encodeSendResponse("msg_9", -1500, 300))),
  );
  // Negative times take the BinaryWriter path; the offset follows there too.
  assert.deepEqual(
    encodeSendResponse("msg_9", -1500, 300),
    toBinary(
      SendMessageResponseSchema,
      create(SendMessageResponseSchema, {
        messageId: "msg_9",
        timestamp: timestampFromMs(-1500),
        offset: 300n,
      }),
    ),
  );
});

// --- bad input on a raw HTTP/2 stream -------------------------------------

interface Reply {
  /** The HTTP `:status`. */
  http: number;
  /** `grpc-status`, or -1 if the stream closed without one. */
  status: number;
  message: string;
}

const REQUEST_HEADERS = {
  ":method": "POST",
  ":path": chatPaths.SendMessage,
  "content-type": "application/grpc",
  te: "trailers",
};

/** A raw h2c session to the core; `await using` closes it and its streams. */
async function rawSession(port: number) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  const streams: http2.ClientHttp2Stream[] = [];
  return {
    /**
     * Opens a SendMessage stream; resolves with the status as soon as one
     * arrives (the request side may still be open).
     */
    open(headers: Record<string, string> = {}, endStream = false) {
      const stream = session.request(
        { ...REQUEST_HEADERS, ...headers },
        { endStream },
      );
      streams.push(stream);
      stream.on("error", () => {});
      const reply = new Promise<Reply>((resolve) => {
        let http = 0;
        const read = (h: http2.IncomingHttpHeaders) => {
          http ||= Number(h[":status"] ?? 0);
          if (h["grpc-status"] === undefined) return;
          resolve({
            http,
            status: Number(h["grpc-status"]),
            message: decodeURIComponent(String(h["grpc-message"] ?? "")),
          });
        };
        stream.on("response", read);
        stream.on("trailers", read);
        stream.on("data", () => {});
        stream.on("close", () => resolve({ http, status: -1, message: "" }));
      });
      return { stream, reply };
    },
    async [Symbol.asyncDispose]() {
      for (const s of streams) {
        if (!s.closed) s.close(http2.constants.NGHTTP2_CANCEL);
      }
      await new Promise<void>((resolve) => session.close(() => resolve()));
    },
  };
}

/** A framed SendMessageRequest. */
const framedPost = (content: string, user = "u", room = "r") =>
  frameMessage(encodeRequest(user, content, room));

/**
 * A core with a subscriber to room "r"; `quiet()` checks that the next
 * broadcast it gets is a fresh marker, i.e. nothing reached the room since.
 */
async function coreWithWatcher() {
  const f = await startCore({ maxMessageBytes: 1024 });
  const sub = f.client.subscribeMessages({ room: "r", user: "watcher" });
  await take(sub, 1);
  let markers = 0;
  return {
    f,
    sub,
    async quiet(what: string) {
      const content = `marker ${++markers}`;
      await f.client.sendMessage({ user: "m", content, room: "r" });
      const [next] = await take(sub, 1);
      assert.equal(next.content, content, `${what}: something was broadcast`);
    },
    async [Symbol.asyncDispose]() {
      sub.cancel();
      await f[Symbol.asyncDispose]();
    },
  };
}

for (const method of ["Chat", "UploadMessages"]) {
  Deno.test(`${method} with a malformed grpc-timeout is INTERNAL before anything is posted, as SendMessage`, async () => {
    await using w = await coreWithWatcher();
    await using raw = await rawSession(w.f.core.port);
    const { stream, reply } = raw.open({
      ":path": `/chat.ChatService/${method}`,
      "grpc-timeout": "soon",
    });
    stream.end(frameMessage(toBinary(
      MessageSchema,
      create(MessageSchema, { user: "u", room: "r", content: "timed" }),
    )));
    const got = await reply;
    assert.deepEqual([got.status, got.message], [
      13,
      'Invalid grpc-timeout value "soon"',
    ]);
    await w.quiet(`${method} with a bad timeout`);
  });
}

const cases: [string, Uint8Array[], number, RegExp][] = [
  [
    "two messages",
    [framedPost("a"), framedPost("b")],
    12,
    /^Received a second request message for unary call$/,
  ],
  [
    "compressed flag 1 without grpc-encoding",
    [Buffer.from([1]), framedPost("a").subarray(1)],
    13,
    /Received compressed message but "grpc-encoding" header was identity/,
  ],
  [
    "flag 2",
    [Buffer.from([2]), framedPost("a").subarray(1)],
    13,
    /invalid flag 2/,
  ],
  [
    "a truncated frame",
    [framedPost("truncated").subarray(0, 9)],
    13,
    /Incomplete message/,
  ],
  ["a 2-byte prefix", [Buffer.from([0, 0])], 13, /Incomplete message/],
  ["a 4-byte prefix", [Buffer.from([0, 0, 0, 0])], 13, /Incomplete message/],
  [
    "a prefix in pieces, then two messages",
    [
      Buffer.from([0, 0]),
      Buffer.concat([framedPost("a"), framedPost("b")])
        .subarray(2),
    ],
    12,
    /second request message/,
  ],
  [
    "malformed protobuf",
    [frameMessage(new Uint8Array([0x0a, 0x05, 0x61]))],
    13,
    /^Error deserializing request/,
  ],
  ["an empty user", [framedPost("c", "")], 3, /^user is required$/],
  ["an empty room", [framedPost("c", "u", "")], 3, /^room is required$/],
  ["empty content", [framedPost("")], 3, /^content is required$/],
  ["blank content", [framedPost(" \n\t ")], 3, /^content is required$/],
  ["a blank user", [framedPost("c", "  ")], 3, /^user is required$/],
  ["an empty message", [frameMessage(new Uint8Array())], 3, /is required/],
];

Deno.test("SendMessage maps bad request bytes to statuses and broadcasts nothing", async () => {
  await using w = await coreWithWatcher();
  await using raw = await rawSession(w.f.core.port);

  const none = raw.open({}, true);
  const noMessage = await none.reply;
  assert.equal(noMessage.status, 12);
  assert.equal(
    noMessage.message,
    "Received no request message for unary call",
  );
  await w.quiet("no message");

  for (const [what, chunks, status, message] of cases) {
    const { stream, reply } = raw.open();
    for (const chunk of chunks) stream.write(chunk);
    stream.end();
    const got = await reply;
    assert.equal(got.status, status, `${what}: ${got.message}`);
    assert.match(got.message, message, what);
    await w.quiet(what);
  }

  // A message split across many writes is still read whole.
  const splits: [string, number][] = [["split", 3], ["x".repeat(900), 64]];
  for (const [content, step] of splits) {
    const { stream, reply } = raw.open();
    const whole = framedPost(content);
    for (let i = 0; i < whole.length; i += step) {
      stream.write(whole.subarray(i, i + step));
    }
    stream.end();
    assert.equal((await reply).status, 0);
    const [m] = await take(w.sub, 1);
    assert.equal(m.content, content);
  }
});

Deno.test("SendMessage with a non-gRPC content type is left to grpc-js", async () => {
  await using w = await coreWithWatcher();
  await using raw = await rawSession(w.f.core.port);
  const plain = { "content-type": "text/plain" };
  const direct = raw.open(plain);
  direct.stream.end(framedPost("plain"));
  // The same request on a path grpc-js always serves: the same answer.
  const other = raw.open({ ...plain, ":path": chatPaths.SubscribeMessages });
  other.stream.end(framedPost("plain"));
  const [got, grpcJs] = await Promise.all([direct.reply, other.reply]);
  assert.deepEqual(got, grpcJs);
  assert.equal(got.status, -1, "no grpc-status: not a gRPC answer");
  // The core's own HTTP/2 transport answers 415 itself (grpc-js would, but
  // reads the status from http2.constants, where Deno lacks it).
  assert.equal(got.http, 415);
  await w.quiet("non-gRPC content type");
});

Deno.test("SendMessage over maxMessageBytes fails before the body is sent", async () => {
  await using w = await coreWithWatcher();
  await using raw = await rawSession(w.f.core.port);
  const { stream, reply } = raw.open();
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(1_000_000, 1);
  stream.write(prefix);
  stream.write(Buffer.alloc(100, 0x41));
  // The request stays open: the status comes from the prefix alone.
  const got = await reply;
  assert.equal(got.status, 8);
  assert.equal(
    got.message,
    "Received message larger than max (1000000 vs. 1024)",
  );
  await w.quiet("oversize");
});

Deno.test("SendMessage whose request completes after its grpc-timeout is DEADLINE_EXCEEDED", async () => {
  await using w = await coreWithWatcher();
  await using raw = await rawSession(w.f.core.port);
  const { stream, reply } = raw.open({ "grpc-timeout": "20m" });
  await new Promise((r) => setTimeout(r, 100));
  stream.end(framedPost("late"));
  const got = await reply;
  assert.equal(got.status, 4);
  assert.match(got.message, /Deadline exceeded/);
  await w.quiet("late request");

  // Within its deadline the same request goes through.
  const inTime = raw.open({ "grpc-timeout": "5S" });
  inTime.stream.end(framedPost("in time"));
  assert.equal((await inTime.reply).status, 0);
});

Deno.test("SendMessage cancelled before its request completes runs nothing and leaks nothing", async () => {
  await using w = await coreWithWatcher();
  const before = w.f.core.snapshot();
  await using raw = await rawSession(w.f.core.port);
  const whole = framedPost("cancelled");
  // A partial message, then the whole message without END_STREAM.
  for (const sent of [whole.subarray(0, 8), whole]) {
    const { stream, reply } = raw.open();
    reply.catch(() => {});
    stream.write(sent);
    await new Promise((r) => setTimeout(r, 50));
    const closed = new Promise((r) => stream.once("close", r));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await closed;
    await new Promise((r) => setTimeout(r, 50));
    await w.quiet(`cancelled after ${sent.length} bytes`);
  }
  const next = raw.open();
  next.stream.end(framedPost("next"));
  assert.equal((await next.reply).status, 0);
  assert.deepEqual(w.f.core.snapshot(), before);
});

Deno.test("SendMessage too large to broadcast fails for the sender only; subscribers keep their stream", async () => {
  await using w = await coreWithWatcher();
  await using raw = await rawSession(w.f.core.port);
  // Fits the 1024-byte receive limit, but not once id and timestamp are added.
  const { stream, reply } = raw.open();
  stream.end(framedPost("x".repeat(1005)));
  const got = await reply;
  assert.equal(got.status, 8);
  assert.match(got.message, /too large to broadcast: \d+ bytes/);
  // The watcher's stream is still open and gets the next post.
  await w.quiet("oversize broadcast");
});

Deno.test("SendMessage with a malformed grpc-timeout is INTERNAL, as in grpc-js", async () => {
  await using w = await coreWithWatcher();
  await using raw = await rawSession(w.f.core.port);
  const { stream, reply } = raw.open({ "grpc-timeout": "soon" });
  stream.end(framedPost("never"));
  const got = await reply;
  assert.equal(got.status, 13);
  assert.equal(got.message, 'Invalid grpc-timeout value "soon"');
  await w.quiet("bad timeout");
});
