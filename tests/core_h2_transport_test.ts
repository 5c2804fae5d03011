/**
 * The core's own HTTP/2 server (http2/server/) on the wire: a raw-frame client
 * against a real core, for what grpc-js clients never send: GOAWAY on a busy
 * connection, small windows, too many streams, malformed frames.
 */
import { concatBytes } from "../protocol/bytes.ts";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import {
  ErrorCode,
  Flag,
  FrameType,
  goawayFrame,
  pingFrame,
  readUint32,
  Setting,
  windowUpdateFrame,
} from "../protocol/http2/frames.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import {
  concat,
  type Frame,
  frame,
  PeerConnection,
} from "./fixtures/h2_raw_peer.ts";
import { rawClient } from "./fixtures/h2_raw_client.ts";
import { eventually, startCore } from "./support/core.ts";
import { listenWithH2 } from "../server/grpcjs/h2_transport.ts";

function request(peer: PeerConnection, id: number, path: string): Uint8Array {
  return peer.headers(id, [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", "core"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ]);
}

function post(id: number, content: string): Uint8Array {
  const body = toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "raw", room: "h2", content }),
  );
  return frame(FrameType.DATA, Flag.END_STREAM, id, encodeEnvelope(0, body));
}

function subscribe(id: number, room: string): Uint8Array {
  const body = toBinary(
    SubscribeRequestSchema,
    create(SubscribeRequestSchema, { user: "raw", room }),
  );
  return frame(FrameType.DATA, Flag.END_STREAM, id, encodeEnvelope(0, body));
}

/** What came back on one stream. */
interface Answer {
  headers: (readonly [string, string])[][];
  data: number;
  rst?: number;
}

/** Reads frames until every stream in `ids` ended (trailers or RST_STREAM). */
async function answers(
  peer: PeerConnection,
  ids: number[],
  onOther?: (f: Frame) => void,
): Promise<Map<number, Answer>> {
  const out = new Map<number, Answer>(
    ids.map((id) => [id, { headers: [], data: 0 }]),
  );
  const open = new Set(ids);
  while (open.size > 0) {
    const f = await peer.next();
    if (f === null) throw new Error(`EOF with streams ${[...open]} open`);
    const a = out.get(f.streamId);
    if (a === undefined) {
      // Every header block moves the HPACK state (the core indexes its
      // constant headers), also those of streams not waited for.
      if (f.type === FrameType.HEADERS) peer.decoder.decode(f.payload);
      onOther?.(f);
      continue;
    }
    if (f.type === FrameType.HEADERS) {
      a.headers.push(peer.decoder.decode(f.payload));
      if (f.flags & Flag.END_STREAM) open.delete(f.streamId);
    } else if (f.type === FrameType.DATA) {
      a.data += f.payload.byteLength;
      if (f.flags & Flag.END_STREAM) open.delete(f.streamId);
    } else if (f.type === FrameType.RST_STREAM) {
      a.rst = readUint32(f.payload, 0);
      open.delete(f.streamId);
    }
  }
  return out;
}

function grpcStatus(a: Answer): string | undefined {
  return a.headers.at(-1)?.find(([n]) => n === "grpc-status")?.[1];
}

/** Reads until GOAWAY; returns its error code, then expects EOF. */
async function goawayThenEof(peer: PeerConnection): Promise<number> {
  const g = await peer.until((f) => f.type === FrameType.GOAWAY);
  const code = readUint32(g.payload, 4);
  await peer.eof();
  return code;
}

async function sendOk(f: Awaited<ReturnType<typeof startCore>>) {
  const reply = await f.client.sendMessage({
    user: "probe",
    room: "probe",
    content: "still here",
  });
  assert.match(reply.messageId, /^msg_\d+$/);
}

Deno.test("h2 transport: unary call as HEADERS, DATA, trailers with grpc-status 0", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  await peer.write(request(peer, 1, chatPaths.SendMessage), post(1, "hi"));
  const a = (await answers(peer, [1])).get(1)!;
  assert.equal(a.headers.length, 2, "response headers, then trailers");
  assert.deepEqual(a.headers[0].slice(0, 2), [
    [":status", "200"],
    ["content-type", "application/grpc+proto"],
  ]);
  assert.ok(a.data > 5, "one framed SendMessageResponse");
  assert.equal(grpcStatus(a), "0");
});

Deno.test("h2 transport: PING is answered with an ACK carrying the same 8 bytes", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  const data = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  await peer.write(pingFrame(data));
  const ack = await peer.until((fr) => fr.type === FrameType.PING);
  assert.equal(ack.flags & Flag.ACK, Flag.ACK);
  assert.deepEqual(ack.payload, data);
});

Deno.test("h2 transport: streams above max-concurrent-streams are refused, and freed slots are reused", async () => {
  await using f = await startCore({ transport: "h2", maxConcurrentStreams: 2 });
  using peer = await rawClient(f.core.port);
  const path = chatPaths.SubscribeMessages;
  await peer.write(
    request(peer, 1, path),
    subscribe(1, "a"),
    request(peer, 3, path),
    subscribe(3, "a"),
    request(peer, 5, path),
    subscribe(5, "a"),
  );
  const refused = (await answers(peer, [5])).get(5)!;
  assert.equal(refused.rst, ErrorCode.REFUSED_STREAM);
  await eventually(() => f.core.snapshot().subscribers === 2, "2 subscribers");
  // Cancel one; its slot takes a new stream.
  await peer.write(
    frame(FrameType.RST_STREAM, 0, 1, new Uint8Array([0, 0, 0, 8])),
  );
  await eventually(() => f.core.snapshot().subscribers === 1, "1 left");
  await peer.write(request(peer, 7, chatPaths.SendMessage), post(7, "slot"));
  const a = (await answers(peer, [7])).get(7)!;
  assert.equal(grpcStatus(a), "0");
});

Deno.test("h2 transport: a whole SendMessage with a RST_STREAM behind it in the same read is cancelled, not run", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  // HEADERS, DATA with END_STREAM, then RST_STREAM(CANCEL): one write, one
  // read. The reset comes before the request's 'end' is handed over.
  await peer.write(
    request(peer, 1, chatPaths.SendMessage),
    post(1, "cancelled"),
    frame(FrameType.RST_STREAM, 0, 1, new Uint8Array([0, 0, 0, 8])),
  );
  // The next call on the connection is answered; the cancelled one was
  // not published: the next post in the room gets its first offset.
  await peer.write(request(peer, 3, chatPaths.SendMessage), post(3, "next"));
  const got = await answers(peer, [3], (fr) => {
    if (fr.streamId === 1) {
      assert.fail(`frame ${fr.type} on the cancelled call`);
    }
  });
  assert.equal(grpcStatus(got.get(3)!), "0");
  const res = await f.client.sendMessage({
    user: "p",
    room: "h2",
    content: "x",
  });
  assert.equal(res.offset, 2n, "next is 1, this is 2: nothing of stream 1");
});

Deno.test("h2 transport: a unary answer held by flow control sends its trailers after its last DATA", async () => {
  await using f = await startCore({ transport: "h2" });
  // No stream window: the answer's HEADERS come, its message waits.
  using peer = await rawClient(f.core.port, [[Setting.INITIAL_WINDOW_SIZE, 0]]);
  await peer.write(request(peer, 1, chatPaths.SendMessage), post(1, "held"));
  const seen: Frame[] = [];
  const reading = (async () => {
    while (true) {
      const fr = await peer.next();
      if (fr === null) return;
      if (fr.streamId === 1) seen.push(fr);
    }
  })();
  await eventually(() => seen.length === 1, "response headers");
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(seen.map((fr) => fr.type), [FrameType.HEADERS]);
  assert.equal(seen[0].flags & Flag.END_STREAM, 0);

  // Part of the message: still no trailers.
  await peer.write(windowUpdateFrame(1, 3));
  await eventually(() => seen.length === 2, "3 bytes of DATA");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(seen.length, 2);
  assert.equal(seen[1].type, FrameType.DATA);
  assert.equal(seen[1].payload.byteLength, 3);

  // The rest, then the trailers that end the stream.
  await peer.write(windowUpdateFrame(1, 1 << 16));
  await eventually(
    () => seen.at(-1)?.type === FrameType.HEADERS,
    "trailers after the rest",
  );
  const types = seen.map((fr) => fr.type);
  assert.deepEqual(types, [
    FrameType.HEADERS,
    FrameType.DATA,
    FrameType.DATA,
    FrameType.HEADERS,
  ]);
  const trailers = seen.at(-1)!;
  assert.ok(trailers.flags & Flag.END_STREAM);
  const fields = peer.decoder.decode(seen[0].payload);
  assert.ok(fields.some(([n, v]) => n === ":status" && v === "200"));
  const status = peer.decoder.decode(trailers.payload);
  assert.ok(status.some(([n, v]) => n === "grpc-status" && v === "0"));
  // The message is a whole SendMessageResponse (prefix + payload).
  const message = concatBytes([seen[1].payload, seen[2].payload]);
  assert.equal(message[0], 0);
  assert.equal(readUint32(message, 1), message.byteLength - 5);
  peer.conn.close();
  await reading;
});

Deno.test("h2 transport: a stream gets no more DATA than its window, and more after WINDOW_UPDATE", async () => {
  await using f = await startCore({ transport: "h2" });
  // No stream window at all: only HEADERS may come.
  using peer = await rawClient(f.core.port, [[Setting.INITIAL_WINDOW_SIZE, 0]]);
  await peer.write(
    request(peer, 1, chatPaths.SubscribeMessages),
    subscribe(1, "w"),
  );
  const seen: Frame[] = [];
  const reading = (async () => {
    while (true) {
      const fr = await peer.next();
      if (fr === null) return;
      if (fr.streamId === 1) seen.push(fr);
    }
  })();
  await eventually(() => f.core.snapshot().subscribers === 1, "subscribed");
  for (let i = 0; i < 20; i++) {
    await f.client.sendMessage({ user: "p", room: "w", content: `m${i}` });
  }
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(seen.filter((fr) => fr.type === FrameType.DATA).length, 0);
  assert.equal(
    seen[0]?.type,
    FrameType.HEADERS,
    "headers are not flow-controlled",
  );

  await peer.write(windowUpdateFrame(1, 30));
  await eventually(
    () => seen.some((fr) => fr.type === FrameType.DATA),
    "DATA after WINDOW_UPDATE",
  );
  await new Promise((r) => setTimeout(r, 50));
  const bytes = seen.filter((fr) => fr.type === FrameType.DATA)
    .reduce((n, fr) => n + fr.payload.byteLength, 0);
  assert.equal(bytes, 30, "exactly the window granted");

  await peer.write(windowUpdateFrame(1, 1 << 20));
  await eventually(
    () =>
      seen.filter((fr) => fr.type === FrameType.DATA)
        .reduce((n, fr) => n + fr.payload.byteLength, 0) > 30 * 20,
    "the queued messages follow",
  );
  peer.conn.close();
  await reading.catch(() => {});
  await eventually(() => f.core.snapshot().subscribers === 0, "unsubscribed");
});

Deno.test("h2 transport: a client GOAWAY on a busy connection lets its streams finish, then closes", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  const ids = Array.from({ length: 100 }, (_, i) => 2 * i + 1);
  // Requests and the GOAWAY in one write: the abort Deno's node:http2 has.
  await peer.write(
    ...ids.flatMap((id) => [
      request(peer, id, chatPaths.SendMessage),
      post(id, `m${id}`),
    ]),
    goawayFrame(0, ErrorCode.NO_ERROR),
  );
  const got = await answers(peer, ids);
  for (const id of ids) assert.equal(grpcStatus(got.get(id)!), "0", `#${id}`);
  await peer.eof();
  await sendOk(f);
});

Deno.test("h2 transport: malformed frames end the connection with the RFC's GOAWAY code; the core serves on", async () => {
  await using f = await startCore({ transport: "h2" });
  const cases: [string, (p: PeerConnection) => Uint8Array, number][] = [
    [
      "a frame over 16 KiB",
      () => frame(FrameType.DATA, 0, 1, new Uint8Array(20000)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      "DATA on stream 0",
      () => frame(FrameType.DATA, 0, 0, new Uint8Array(1)),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "DATA on an idle stream",
      () => frame(FrameType.DATA, 0, 9, new Uint8Array(1)),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "a broken HPACK block",
      () =>
        frame(
          FrameType.HEADERS,
          Flag.END_HEADERS,
          1,
          new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ),
      ErrorCode.COMPRESSION_ERROR,
    ],
    [
      "HEADERS on an even stream",
      (p) => request(p, 2, chatPaths.SendMessage),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "a connection WINDOW_UPDATE of 0",
      () => frame(FrameType.WINDOW_UPDATE, 0, 0, new Uint8Array(4)),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "a PING of 4 bytes",
      () => frame(FrameType.PING, 0, 0, new Uint8Array(4)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    ["a CONTINUATION flood", () =>
      concat([
        frame(FrameType.HEADERS, 0, 1, new Uint8Array(0)),
        ...Array.from({ length: 20000 }, () =>
          frame(FrameType.CONTINUATION, 0, 1)),
      ]), ErrorCode.ENHANCE_YOUR_CALM],
    [
      "SETTINGS of 5 bytes",
      () => frame(FrameType.SETTINGS, 0, 0, new Uint8Array(5)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
  ];
  for (const [what, bytes, code] of cases) {
    using peer = await rawClient(f.core.port);
    await peer.write(bytes(peer));
    assert.equal(await goawayThenEof(peer), code, what);
  }
  await sendOk(f);
});

Deno.test("h2 transport: bytes that are not an HTTP/2 preface close the connection", async () => {
  await using f = await startCore({ transport: "h2" });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: f.core.port });
  const peer = new PeerConnection(conn);
  await peer.write(
    new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
  );
  try {
    assert.equal(await goawayThenEof(peer), ErrorCode.PROTOCOL_ERROR);
  } finally {
    conn.close();
  }
  await sendOk(f);
});

Deno.test("h2 transport: a request without :path is reset with PROTOCOL_ERROR; the connection goes on", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  await peer.write(
    peer.headers(1, [[":method", "POST"], [":scheme", "http"], [
      "content-type",
      "application/grpc",
    ]], true),
  );
  const bad = (await answers(peer, [1])).get(1)!;
  assert.equal(bad.rst, ErrorCode.PROTOCOL_ERROR);
  await peer.write(request(peer, 3, chatPaths.SendMessage), post(3, "ok"));
  assert.equal(grpcStatus((await answers(peer, [3])).get(3)!), "0");
});

Deno.test("h2 transport: shutdown ends streams with UNAVAILABLE, sends GOAWAY(NO_ERROR) and closes", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  await peer.write(
    request(peer, 1, chatPaths.SubscribeMessages),
    subscribe(1, "s"),
  );
  await eventually(() => f.core.snapshot().subscribers === 1, "subscribed");
  let goaway: number | undefined;
  const ending = answers(peer, [1], (fr) => {
    if (fr.type === FrameType.GOAWAY) goaway = readUint32(fr.payload, 4);
  });
  const stopped = f.core.shutdown(2000);
  const a = (await ending).get(1)!;
  assert.equal(grpcStatus(a), "14");
  if (goaway === undefined) goaway = await goawayThenEof(peer);
  else await peer.eof();
  assert.equal(goaway, ErrorCode.NO_ERROR);
  await stopped;
});

Deno.test("listenWithH2() refuses a grpc-js server of another layout, naming --transport node", () => {
  const notGrpcJs = {} as unknown as Parameters<typeof listenWithH2>[0];
  assert.throws(
    () =>
      listenWithH2(notGrpcJs, {
        host: "127.0.0.1",
        port: 0,
        maxConcurrentStreams: 10,
      }),
    /--transport node/,
  );
});

Deno.test("h2 transport: a grpc-timeout of 597H or more means no deadline (grpc-js's timer would overflow and fire at once)", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  await peer.write(
    peer.headers(1, [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", chatPaths.SubscribeMessages],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ["grpc-timeout", "600H"],
    ]),
    subscribe(1, "far-deadline"),
  );
  // Whatever comes on the stream within 300 ms must not end it.
  const ended: Frame[] = [];
  const reading = (async () => {
    while (true) {
      const fr = await peer.next().catch(() => null);
      if (fr === null) return;
      if (
        fr.streamId === 1 && (fr.type === FrameType.RST_STREAM ||
          (fr.flags & Flag.END_STREAM) !== 0)
      ) ended.push(fr);
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(ended, [], "the call is still open");
  assert.equal(f.core.snapshot().subscribers, 1);
  peer[Symbol.dispose]();
  await reading;
});
