import assert from "node:assert/strict";
import { createH2Upstream } from "../edge/upstream/h2_upstream.ts";
import { H2Pool } from "../http2/client/pool.ts";
import { H2Stream } from "../http2/client/stream.ts";
import { RequestHeaderEncoder } from "../edge/upstream/request_headers.ts";
import {
  ErrorCode,
  Flag,
  FrameType,
  goawayFrame,
  MAX_STREAM_ID,
  readUint32,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "../protocol/http2/frames.ts";
import { Code } from "../edge/upstream/status.ts";
import { encodeEnvelope, EnvelopeParser } from "../protocol/mod.ts";
import {
  concat,
  frame,
  type PeerConnection,
  type RawPeer,
  startRawPeer,
  u32,
} from "./fixtures/h2_raw_peer.ts";
import { drain } from "./fixtures/upstream_calls.ts";
import {
  bigFields,
  headerFrames,
  indexed,
  literal,
} from "./fixtures/hpack_writer.ts";

const LIMIT = { maxMessageBytes: 4 << 20 };
const PATH = "/chat.ChatService/SendMessage";

async function* messages(...list: Uint8Array[]) {
  for (const m of list) yield m;
}
/** node:assert's deepEqual walks typed arrays slowly; compare bytes here. */
function assertSameBytes(a: Uint8Array, b: Uint8Array, what = "bytes") {
  assert.equal(a.byteLength, b.byteLength, `${what}: length`);
  for (let i = 0; i < a.byteLength; i++) {
    if (a[i] !== b[i]) assert.fail(`${what}: differ at ${i}`);
  }
}
const bytes = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

function call(
  up: ReturnType<typeof createH2Upstream>,
  options: {
    signal?: AbortSignal;
    timeoutMs?: number;
    metadata?: Record<string, string>;
  } = {},
  body: AsyncIterable<Uint8Array> | readonly Uint8Array[] = messages(
    new Uint8Array([1, 2, 3]),
  ),
) {
  return up.call(PATH, body, {
    metadata: options.metadata ?? {},
    signal: options.signal ?? new AbortController().signal,
    timeoutMs: options.timeoutMs,
  });
}

/** Reads `n` whole requests (any interleaving), by stream id. */
async function readRequests(peer: PeerConnection, n: number) {
  const reqs = new Map<
    number,
    { id: number; headers: (readonly [string, string])[]; parts: Uint8Array[] }
  >();
  let done = 0;
  while (done < n) {
    const f = await peer.until((f) =>
      f.type === FrameType.HEADERS || f.type === FrameType.DATA ||
      f.type === FrameType.PING
    );
    if (f.type === FrameType.PING) {
      if (!(f.flags & Flag.ACK)) {
        await peer.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
      }
    } else if (f.type === FrameType.HEADERS) {
      const parts = [f.payload];
      let flags = f.flags;
      while (!(flags & Flag.END_HEADERS)) {
        const c = await peer.until(() => true);
        parts.push(c.payload);
        flags = c.flags;
      }
      reqs.set(f.streamId, {
        id: f.streamId,
        headers: peer.decoder.decode(concat(parts)),
        parts: [],
      });
    } else {
      reqs.get(f.streamId)!.parts.push(f.payload);
      if (f.flags & Flag.END_STREAM) done++;
    }
  }
  return [...reqs.values()].sort((a, b) => a.id - b.id).map((r) => ({
    id: r.id,
    headers: r.headers,
    body: concat(r.parts),
  }));
}

/** A request's grpc-timeout header ("" without one). */
function grpcTimeout(headers: readonly (readonly [string, string])[]): string {
  return headers.find(([k]) => k === "grpc-timeout")?.[1] ?? "";
}

/** Reads one whole request. */
async function readRequest(peer: PeerConnection) {
  return (await readRequests(peer, 1))[0];
}

/** Answers PINGs until the client closes the connection. */
async function serveEof(peer: PeerConnection) {
  while (true) {
    const f = await peer.next();
    if (f === null) return;
    if (f.type === FrameType.PING && !(f.flags & Flag.ACK)) {
      await peer.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
    }
  }
}

async function withPeer(
  script: (peer: PeerConnection, index: number) => Promise<void>,
  fn: (up: ReturnType<typeof createH2Upstream>, peer: RawPeer) => Promise<void>,
  options: Partial<Parameters<typeof createH2Upstream>[1]> = {},
) {
  const peer = startRawPeer(script);
  const up = createH2Upstream(`http://127.0.0.1:${peer.port}`, {
    ...LIMIT,
    ...options,
  });
  let failure: unknown;
  try {
    await fn(up, peer);
  } catch (e) {
    failure = e;
  }
  await up.close();
  // The test's own failure explains a script failure that follows from it.
  await peer.close().catch((e) => failure ??= e);
  if (failure) throw failure;
}

Deno.test("createH2Upstream() sends a gRPC request, acknowledges SETTINGS and PING, and closes without GOAWAY", async () => {
  let seen: (readonly [string, string])[] = [];
  let pingAck: Uint8Array | undefined;
  let settingsAcked = false;
  let goaway: number | undefined;
  await withPeer(async (peer) => {
    await peer.handshake([[Setting.MAX_CONCURRENT_STREAMS, 100]]);
    const req = await readRequest(peer);
    seen = req.headers;
    assert.deepEqual(req.body, new Uint8Array([0, 0, 0, 0, 3, 1, 2, 3]));
    const ping = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    await peer.write(
      peer.answer(req.id, [new Uint8Array([9])]),
      frame(FrameType.PING, 0, 0, ping),
    );
    while (true) {
      const f = await peer.next();
      if (f === null) break;
      settingsAcked = peer.settingsAcks > 0;
      if (f.type === FrameType.PING && f.flags & Flag.ACK) pingAck = f.payload;
      if (f.type === FrameType.PING && !(f.flags & Flag.ACK)) {
        await peer.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
      }
      if (f.type === FrameType.GOAWAY) goaway = readUint32(f.payload, 4);
    }
  }, async (up) => {
    const r = await drain(
      call(up, { metadata: { "custom-header-1": "v", "Content-Type": "x" } }),
    );
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.deepEqual(r.messages, [new Uint8Array([9])]);
    assert.equal(await up.healthy(), true);
  });
  assert.deepEqual(seen.slice(0, 4), [
    [":method", "POST"],
    [":scheme", "http"],
    [":authority", seen[2][1]],
    [":path", PATH],
  ]);
  const h = Object.fromEntries(seen);
  assert.equal(h["content-type"], "application/grpc");
  assert.equal(h.te, "trailers");
  assert.equal(h["custom-header-1"], "v");
  assert.equal(h["user-agent"], "chat-edge/1");
  assert.deepEqual(pingAck, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  assert.ok(settingsAcked);
  // A graceful close is a plain TCP close (docs/goaway.md).
  assert.equal(goaway, undefined);
});

Deno.test("createH2Upstream() never sends, and fails alone with RESOURCE_EXHAUSTED, a call whose headers exceed the core's SETTINGS_MAX_HEADER_LIST_SIZE or the edge's metadata bounds, and with INVALID_ARGUMENT one whose value HTTP/2 cannot carry", async () => {
  const ids: number[] = [];
  await withPeer(async (peer) => {
    await peer.handshake([[Setting.MAX_HEADER_LIST_SIZE, 4096]]);
    // Only the calls that fit arrive, on stream ids in order.
    for (let i = 0; i < 2; i++) {
      const req = await readRequest(peer);
      ids.push(req.id);
      await peer.write(peer.answer(req.id, [new Uint8Array([i])]));
    }
    await serveEof(peer);
  }, async (up) => {
    const ok = await drain(call(up, { metadata: { "x-request-id": "a" } }));
    assert.equal(ok.status.code, Code.OK, ok.status.message);
    // Under the edge's bounds, over the peer's limit: refused locally.
    const overPeer = await drain(
      call(up, { metadata: { "x-request-id": "x".repeat(5000) } }),
    );
    assert.equal(overPeer.status.code, Code.RESOURCE_EXHAUSTED);
    assert.match(
      overPeer.status.message,
      /exceed the upstream's limit of 4096 \(SETTINGS_MAX_HEADER_LIST_SIZE\)/,
    );
    assert.equal(overPeer.status.unsent, undefined);
    // Over the edge's own bounds: per value, then in all.
    const overValue = await drain(
      call(up, { metadata: { "x-request-id": "x".repeat(8193) } }),
    );
    assert.equal(overValue.status.code, Code.RESOURCE_EXHAUSTED);
    assert.match(overValue.status.message, /metadata x-request-id is 8193/);
    const overTotal = await drain(call(up, {
      metadata: {
        "x-request-id": "x".repeat(8000),
        "x-user-agent": "y".repeat(8000),
        "custom-header-1": "z".repeat(1000),
      },
    }));
    assert.equal(overTotal.status.code, Code.RESOURCE_EXHAUSTED);
    assert.match(overTotal.status.message, /over 16384 bytes in all/);
    // A value HTTP/2 cannot carry: the call's fault, INVALID_ARGUMENT, and
    // no "upstream ..." status, which would take the core out of balancing.
    for (const bad of ["\u0100", "a\u0001b", "\u{1f600}"]) {
      const invalid = await drain(
        call(up, { metadata: { "x-request-id": bad } }),
      );
      assert.equal(invalid.status.code, Code.INVALID_ARGUMENT);
      assert.equal(
        invalid.status.message,
        "invalid character in header x-request-id",
      );
    }
    // A path over 1,024 characters: refused before it is encoded or cached.
    const longPath = await drain(
      up.call(`/chat.ChatService/${"M".repeat(2000)}`, [], {
        metadata: {},
        signal: new AbortController().signal,
      }),
    );
    assert.equal(longPath.status.code, Code.RESOURCE_EXHAUSTED);
    assert.match(longPath.status.message, /path of 2018 characters/);
    // The connection goes on.
    const after = await drain(call(up));
    assert.equal(after.status.code, Code.OK, after.status.message);
    assert.deepEqual(after.messages, [new Uint8Array([1])]);
    assert.equal(up.connections?.(), 1);
  });
  assert.deepEqual(ids, [1, 3]);
});

Deno.test("createH2Upstream() fails a stream above GOAWAY's last-stream-id with UNAVAILABLE and sends new calls on a new connection", async () => {
  await withPeer(async (peer, index) => {
    await peer.handshake();
    if (index === 0) {
      const [first, second] = await readRequests(peer, 2);
      assert.equal(first.id, 1);
      assert.equal(second.id, 3);
      await peer.write(goawayFrame(1, ErrorCode.NO_ERROR));
      await new Promise((r) => setTimeout(r, 20));
      await peer.write(peer.answer(first.id, [new Uint8Array([1])]));
    } else {
      const req = await readRequest(peer);
      await peer.write(peer.answer(req.id, [new Uint8Array([2])]));
    }
    await serveEof(peer);
  }, async (up, peer) => {
    const a = call(up);
    const b = call(up);
    const [ra, rb] = await Promise.all([drain(a), drain(b)]);
    assert.equal(ra.status.code, Code.OK, ra.status.message);
    assert.deepEqual(ra.messages, [new Uint8Array([1])]);
    assert.equal(rb.status.code, Code.UNAVAILABLE);
    assert.match(rb.status.message, /GOAWAY/);
    const c = await drain(call(up));
    assert.equal(c.status.code, Code.OK, c.status.message);
    assert.deepEqual(c.messages, [new Uint8Array([2])]);
    assert.equal(peer.accepted(), 2);
  });
});

Deno.test("createH2Upstream() sends a call known whole that GOAWAY excluded once more, on a new connection, with what is left of its deadline", async () => {
  const timeouts: string[] = [];
  await withPeer(async (peer, index) => {
    await peer.handshake();
    if (index === 0) {
      const [first, second] = await readRequests(peer, 2);
      timeouts.push(grpcTimeout(second.headers));
      // The connection alone is told to go away (as the core does for too
      // many resets), the second call unprocessed.
      await peer.write(goawayFrame(first.id, ErrorCode.ENHANCE_YOUR_CALM));
      await peer.write(peer.answer(first.id, [new Uint8Array([1])]));
    } else {
      const req = await readRequest(peer);
      timeouts.push(grpcTimeout(req.headers));
      assert.deepEqual(req.body, encodeEnvelope(0, new Uint8Array([7])));
      await peer.write(peer.answer(req.id, [new Uint8Array([2])]));
    }
    await serveEof(peer);
  }, async (up, peer) => {
    const a = call(up, {}, [new Uint8Array([6])]);
    const b = call(up, { timeoutMs: 5_000 }, [new Uint8Array([7])]);
    const [ra, rb] = await Promise.all([drain(a), drain(b)]);
    assert.equal(ra.status.code, Code.OK, ra.status.message);
    assert.deepEqual(ra.messages, [new Uint8Array([1])]);
    assert.equal(rb.status.code, Code.OK, rb.status.message);
    assert.deepEqual(rb.messages, [new Uint8Array([2])]);
    assert.equal(peer.accepted(), 2);
    assert.equal(up.resends?.(), 1);
  });
  // Sent again with its deadline less the time the first try took.
  assert.equal(timeouts.length, 2);
  const [first, again] = timeouts.map((t) => Number(t.slice(0, -1)));
  assert.ok(timeouts.every((t) => t.endsWith("m")), timeouts.join());
  assert.ok(again <= first && again > first - 2000, timeouts.join());
});

Deno.test("createH2Upstream() sends a refused call once more only: refused again, the refusal is its status; a streamed request is never sent again", async () => {
  let requests = 0;
  await withPeer(async (peer) => {
    await peer.handshake();
    while (true) {
      const req = await readRequest(peer).catch(() => undefined);
      if (req === undefined) return;
      requests++;
      await peer.write(rstStreamFrame(req.id, ErrorCode.REFUSED_STREAM));
    }
  }, async (up) => {
    const known = await drain(call(up, {}, [new Uint8Array([1])]));
    assert.equal(known.status.code, Code.UNAVAILABLE);
    assert.equal(known.status.unsent, true);
    assert.equal(requests, 2);
    const streamed = await drain(call(up));
    assert.equal(streamed.status.code, Code.UNAVAILABLE);
    assert.equal(requests, 3);
  });
});

Deno.test("createH2Upstream() with retryRefused false leaves a refused call to its caller", async () => {
  let requests = 0;
  await withPeer(async (peer) => {
    await peer.handshake();
    const req = await readRequest(peer);
    requests++;
    await peer.write(rstStreamFrame(req.id, ErrorCode.REFUSED_STREAM));
    await serveEof(peer);
  }, async (up) => {
    const r = await drain(call(up, {}, [new Uint8Array([1])]));
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.equal(r.status.unsent, true);
    assert.equal(requests, 1);
  }, { retryRefused: false });
});

Deno.test("createH2Upstream() maps RST_STREAM from the peer to a status", async () => {
  await withPeer(async (peer) => {
    await peer.handshake();
    const a = await peer.requestHeaders();
    await peer.write(rstStreamFrame(a.id, ErrorCode.REFUSED_STREAM));
    const b = await peer.requestHeaders();
    await peer.write(
      peer.headers(b.id, [[":status", "200"], [
        "content-type",
        "application/grpc",
      ]]),
      rstStreamFrame(b.id, ErrorCode.ENHANCE_YOUR_CALM),
    );
    await serveEof(peer);
  }, async (up) => {
    const a = await drain(call(up));
    assert.equal(a.status.code, Code.UNAVAILABLE);
    assert.match(a.status.message, /reset the stream \(code 7\)/);
    const b = await drain(call(up));
    assert.equal(b.status.code, Code.RESOURCE_EXHAUSTED);
  });
});

Deno.test("createH2Upstream() uploads 1 MiB within a small peer window and MAX_FRAME_SIZE 16384", async () => {
  const sent = Array.from({ length: 64 }, (_, i) => bytes(16 * 1024, i));
  let largest = 0;
  await withPeer(async (peer) => {
    await peer.handshake([
      [Setting.INITIAL_WINDOW_SIZE, 1000],
      [Setting.MAX_FRAME_SIZE, 16384],
    ]);
    const { id } = await peer.requestHeaders();
    let streamWindow = 1000;
    let connWindow = 65535;
    const parts: Uint8Array[] = [];
    while (true) {
      const f = await peer.until((f) => f.streamId === id);
      if (f.type !== FrameType.DATA) continue;
      largest = Math.max(largest, f.payload.byteLength);
      streamWindow -= f.payload.byteLength;
      connWindow -= f.payload.byteLength;
      assert.ok(streamWindow >= 0 && connWindow >= 0, "window overrun");
      parts.push(f.payload);
      if (f.flags & Flag.END_STREAM) break;
      // Like a real receiver, give the window back once half is used.
      const used = 1000 - streamWindow;
      if (used >= 500) {
        await peer.write(
          windowUpdateFrame(0, used),
          windowUpdateFrame(id, used),
        );
        streamWindow += used;
        connWindow += used;
      }
    }
    const parser = new EnvelopeParser({
      maxMessageBytes: 1 << 20,
      allowedFlags: 0,
    });
    const got = parser.push(concat(parts)).map((e) => e.data);
    assert.equal(got.length, sent.length);
    got.forEach((m, i) => assertSameBytes(m, sent[i], `message ${i}`));
    await peer.write(peer.answer(id, [u32(got.length)]));
    await serveEof(peer);
  }, async (up) => {
    const r = await drain(up.call(PATH, messages(...sent), {
      metadata: {},
      signal: new AbortController().signal,
    }));
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.deepEqual(r.messages, [u32(64)]);
  });
  assert.ok(largest <= 1000, `DATA frame of ${largest} bytes`);
});

Deno.test("createH2Upstream() opens more connections at MAX_CONCURRENT_STREAMS=1 and all calls succeed", async () => {
  let most = 0;
  await withPeer(async (peer) => {
    let open = 0;
    await peer.handshake([[Setting.MAX_CONCURRENT_STREAMS, 1]]);
    while (true) {
      let req;
      try {
        req = await readRequest(peer);
      } catch {
        return; // client closed the connection
      }
      most = Math.max(most, ++open);
      await new Promise((r) => setTimeout(r, 30));
      open--;
      await peer.write(peer.answer(req.id, [req.body.subarray(5)]));
    }
  }, async (up, peer) => {
    const results = await Promise.all(
      [1, 2, 3].map((n) => drain(call(up, {}, messages(new Uint8Array([n]))))),
    );
    results.forEach((r, i) => {
      assert.equal(r.status.code, Code.OK, r.status.message);
      assert.deepEqual(r.messages, [new Uint8Array([i + 1])]);
    });
    assert.equal(peer.accepted(), 3);
  });
  assert.equal(most, 1);
});

Deno.test("createH2Upstream() holds back the stream window for a slow consumer, so the peer's writes block until it reads", async () => {
  const total = 40;
  const size = 8 * 1024;
  let sentCount = 0;
  let blocked: () => void;
  const peerBlocked = new Promise<void>((r) => blocked = r);
  await withPeer(async (peer) => {
    const clientSettings = await peer.handshake();
    let window = 65535;
    for (let p = 0; p < clientSettings.payload.byteLength; p += 6) {
      const key = (clientSettings.payload[p] << 8) |
        clientSettings.payload[p + 1];
      if (key === Setting.INITIAL_WINDOW_SIZE) {
        window = readUint32(clientSettings.payload, p + 2);
      }
    }
    const { id } = await readRequest(peer);
    await peer.write(
      peer.headers(id, [[":status", "200"], [
        "content-type",
        "application/grpc",
      ]]),
    );
    while (sentCount < total) {
      const data = concat([
        u32(0).subarray(3),
        u32(size),
        bytes(size, sentCount),
      ]);
      while (window < data.byteLength) {
        blocked();
        const f = await peer.until((f) =>
          f.type === FrameType.WINDOW_UPDATE && f.streamId === id
        );
        window += readUint32(f.payload, 0);
      }
      await peer.write(frame(FrameType.DATA, 0, id, data));
      window -= data.byteLength;
      sentCount++;
    }
    await peer.write(peer.headers(id, [["grpc-status", "0"]], true));
    await serveEof(peer);
  }, async (up) => {
    const c = call(up);
    await peerBlocked;
    // The window given back before the queue filled lets a few more through.
    await new Promise((r) => setTimeout(r, 100));
    const atBlock = sentCount;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(sentCount, atBlock, "the peer kept writing");
    assert.ok(atBlock < total);
    const r = await drain(c);
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.equal(r.messages.length, total);
    r.messages.forEach((m, i) => assertSameBytes(m, bytes(size, i)));
  }, { streamWindow: 64 * 1024, highWaterMark: 4 });
});

Deno.test("createH2Upstream() buffers about a stream window of large messages for a consumer that stopped, not 16 of them", async () => {
  // 16 messages of --max-message-bytes (10 MiB) were 160 MiB held per
  // stalled browser; the byte mark keeps it near the 1 MiB window.
  const total = 24;
  const size = 512 * 1024;
  let sentBytes = 0;
  let blocked: () => void;
  const peerBlocked = new Promise<void>((r) => blocked = r);
  await withPeer(async (peer) => {
    await peer.handshake();
    let window = 1024 * 1024; // the client's default stream window
    const { id } = await readRequest(peer);
    await peer.write(
      peer.headers(id, [[":status", "200"], [
        "content-type",
        "application/grpc",
      ]]),
    );
    for (let n = 0; n < total; n++) {
      const data = concat([u32(0).subarray(3), u32(size), bytes(size, n)]);
      for (let at = 0; at < data.byteLength; at += 16384) {
        const part = data.subarray(at, at + 16384);
        while (window < part.byteLength) {
          blocked();
          const f = await peer.until((f) =>
            f.type === FrameType.WINDOW_UPDATE && f.streamId === id
          );
          window += readUint32(f.payload, 0);
        }
        await peer.write(frame(FrameType.DATA, 0, id, part));
        window -= part.byteLength;
        sentBytes += part.byteLength;
      }
    }
    await peer.write(peer.headers(id, [["grpc-status", "0"]], true));
    await serveEof(peer);
  }, async (up) => {
    const c = call(up);
    await peerBlocked;
    await new Promise((r) => setTimeout(r, 300));
    // Queued (1 MiB and the message that crossed it) plus the window.
    assert.ok(
      sentBytes <= 3 * 1024 * 1024,
      `the edge took ${sentBytes} bytes for a consumer that reads nothing`,
    );
    const r = await drain(c);
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.equal(r.messages.length, total);
    r.messages.forEach((m, i) => assertSameBytes(m, bytes(size, i)));
  });
});

Deno.test("createH2Upstream() reports UNAVAILABLE when the peer closes the socket mid-call", async () => {
  await withPeer(async (peer) => {
    await peer.handshake();
    const { id } = await readRequest(peer);
    await peer.write(
      peer.headers(id, [[":status", "200"], [
        "content-type",
        "application/grpc",
      ]]),
    );
    peer.conn.close();
  }, async (up) => {
    const r = await drain(call(up));
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.match(r.status.message, /closed the connection|lost/);
  });
});

Deno.test("createH2Upstream() reports UNAVAILABLE when the connection is refused", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const up = createH2Upstream(`http://127.0.0.1:${port}`, LIMIT);
  try {
    const r = await drain(call(up));
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.match(r.status.message, /refused/i);
    assert.equal(await up.healthy(), false);
  } finally {
    await up.close();
  }
});

Deno.test("createH2Upstream() resets the stream with CANCEL on abort and on the deadline", async () => {
  const resets: number[] = [];
  let timeout: string | undefined;
  await withPeer(async (peer) => {
    await peer.handshake();
    for (let i = 0; i < 2; i++) {
      const { id, headers } = await peer.requestHeaders();
      if (i === 1) timeout = Object.fromEntries(headers)["grpc-timeout"];
      await peer.write(
        peer.headers(id, [[":status", "200"], [
          "content-type",
          "application/grpc",
        ]]),
      );
      const rst = await peer.until((f) =>
        f.type === FrameType.RST_STREAM && f.streamId === id
      );
      resets.push(readUint32(rst.payload, 0));
    }
    await serveEof(peer);
  }, async (up) => {
    const ctl = new AbortController();
    const aborted = call(up, { signal: ctl.signal });
    await aborted.headers;
    ctl.abort();
    assert.equal((await aborted.status).code, Code.CANCELLED);
    const timed = await drain(call(up, { timeoutMs: 100 }));
    assert.equal(timed.status.code, Code.DEADLINE_EXCEEDED);
    // Let the RST_STREAM frames reach the peer before closing.
    await new Promise((r) => setTimeout(r, 50));
  });
  assert.deepEqual(resets, [ErrorCode.CANCEL, ErrorCode.CANCEL]);
  assert.equal(timeout, "100m");
});

Deno.test("createH2Upstream() answers malformed frames with GOAWAY and fails the call UNAVAILABLE", async () => {
  const cases: [string, (id: number) => Uint8Array, number][] = [
    [
      "short PING",
      () => frame(FrameType.PING, 0, 0, new Uint8Array(7)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      "DATA on stream 0",
      () => frame(FrameType.DATA, 0, 0, new Uint8Array(1)),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "PUSH_PROMISE",
      (id) => frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, id, u32(2)),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "stray CONTINUATION",
      (id) => frame(FrameType.CONTINUATION, Flag.END_HEADERS, id),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "oversized frame",
      (id) => frame(FrameType.DATA, 0, id, new Uint8Array(16385)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      "bad HPACK",
      (id) =>
        frame(
          FrameType.HEADERS,
          Flag.END_HEADERS,
          id,
          new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ),
      ErrorCode.COMPRESSION_ERROR,
    ],
    [
      "window overflow",
      () => windowUpdateFrame(0, 0x7fffffff),
      ErrorCode.FLOW_CONTROL_ERROR,
    ],
    [
      "HEADERS on an idle stream",
      () =>
        frame(FrameType.HEADERS, Flag.END_HEADERS, 9, new Uint8Array([0x88])),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "SETTINGS of the wrong size",
      () => frame(FrameType.SETTINGS, 0, 0, new Uint8Array(5)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      "padding past the payload",
      (id) => frame(FrameType.DATA, Flag.PADDED, id, new Uint8Array([9, 0, 0])),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "CONTINUATION flood",
      (id) =>
        concat([
          frame(FrameType.HEADERS, 0, id, new Uint8Array([0x88])),
          ...Array.from(
            { length: 30_000 },
            () => frame(FrameType.CONTINUATION, 0, id),
          ),
        ]),
      ErrorCode.ENHANCE_YOUR_CALM,
    ],
    [
      "a response header block over 256 KiB encoded",
      (id) => headerFrames(id, concat([indexed(8), bigFields(70)])),
      ErrorCode.ENHANCE_YOUR_CALM,
    ],
    [
      "HEADERS interrupted by DATA",
      (id) =>
        concat([
          frame(FrameType.HEADERS, 0, id, new Uint8Array([0x88])),
          frame(FrameType.DATA, 0, id),
        ]),
      ErrorCode.PROTOCOL_ERROR,
    ],
  ];
  for (const [what, bad, code] of cases) {
    let goaway: number | undefined;
    await withPeer(async (peer) => {
      await peer.handshake();
      const { id } = await peer.requestHeaders();
      await peer.write(bad(id));
      const f = await peer.until((f) => f.type === FrameType.GOAWAY);
      goaway = readUint32(f.payload, 4);
      await serveEof(peer);
    }, async (up) => {
      // The deadline turns a missed check into a failure, not a hang.
      const r = await drain(call(up, { timeoutMs: 5000 }));
      assert.equal(r.status.code, Code.UNAVAILABLE, what);
      assert.match(r.status.message, /protocol error/, what);
    });
    assert.equal(goaway, code, what);
  }
  // A server that does not start with SETTINGS.
  await withPeer(async (peer) => {
    await peer.write(frame(FrameType.PING, 0, 0, new Uint8Array(8)));
    const sink = new Uint8Array(4096);
    while (await peer.conn.read(sink) !== null) {
      /* until the client closes */
    }
  }, async (up) => {
    const r = await drain(call(up));
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.match(r.status.message, /must start with SETTINGS/);
  });
});

Deno.test("createH2Upstream() splits a large request header block into CONTINUATION and reads padded, split response headers", async () => {
  // Metadata is bounded (16 KiB in all) and so is the path (1,024): with a
  // char Huffman would lengthen (written raw), both near their bounds make
  // a block over one 16 KiB frame.
  const big = "/" + "~".repeat(1000);
  const metadata = {
    "x-request-id": "~".repeat(8000),
    "x-user-agent": "~".repeat(8000),
  };
  let got: string | undefined;
  await withPeer(async (peer) => {
    await peer.handshake();
    const req = await readRequest(peer);
    const sent = Object.fromEntries(req.headers);
    got = sent[":path"];
    assert.equal(sent["x-request-id"], metadata["x-request-id"]);
    assert.equal(sent["x-user-agent"], metadata["x-user-agent"]);
    const block = peer.encoder.encode([
      [":status", "200"],
      ["content-type", "application/grpc"],
      ["x-reply", "y".repeat(20_000)],
    ]);
    // HEADERS with padding and priority, then two CONTINUATIONs.
    const first = concat([
      new Uint8Array([3]),
      new Uint8Array(5),
      block.subarray(0, 100),
      new Uint8Array(3),
    ]);
    await peer.write(
      frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, req.id, first),
      frame(FrameType.CONTINUATION, 0, req.id, block.subarray(100, 10_000)),
      frame(
        FrameType.CONTINUATION,
        Flag.END_HEADERS,
        req.id,
        block.subarray(10_000),
      ),
      frame(
        FrameType.DATA,
        Flag.PADDED,
        req.id,
        concat([
          new Uint8Array([2]),
          u32(0).subarray(3),
          u32(1),
          new Uint8Array([7, 0, 0]),
        ]),
      ),
      peer.headers(req.id, [["grpc-status", "0"]], true),
    );
    await serveEof(peer);
  }, async (up) => {
    const r = await drain(up.call(big, messages(new Uint8Array([1])), {
      metadata,
      signal: new AbortController().signal,
    }));
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.equal(r.headers["x-reply"], "y".repeat(20_000));
    assert.deepEqual(r.messages, [new Uint8Array([7])]);
  });
  assert.equal(got, big);
});

Deno.test("createH2Upstream() fails only the call whose response header list is above 64 KiB; the other call on the connection, naming the entries it added, succeeds", async () => {
  await withPeer(async (peer) => {
    await peer.handshake();
    const [a, b] = await readRequests(peer, 2);
    // 17 fields of 4,000 octets (69 KB of list, within the 256 KiB block
    // cap), adding content-type to the table before the limit and
    // x-after after it.
    await peer.write(
      headerFrames(
        a.id,
        concat([
          indexed(8), // :status 200
          literal("content-type", "application/grpc", true),
          bigFields(17, "y"),
          literal("x-after", "tail", true),
        ]),
      ),
      // The reset stream's trailers are decoded and dropped.
      peer.headers(a.id, [["grpc-status", "0"]], true),
      // b's headers only by index: 63 and 62 are the entries a's added.
      headerFrames(b.id, concat([indexed(8), indexed(63), indexed(62)])),
      frame(FrameType.DATA, 0, b.id, encodeEnvelope(0, new Uint8Array([9]))),
      peer.headers(b.id, [["grpc-status", "0"]], true),
    );
    const rst = await peer.until((f) => f.type === FrameType.RST_STREAM);
    assert.equal(rst.streamId, a.id);
    assert.equal(readUint32(rst.payload, 0), ErrorCode.INTERNAL_ERROR);
    await serveEof(peer);
  }, async (up, peer) => {
    const [a, b] = await Promise.all([drain(call(up)), drain(call(up))]);
    assert.equal(a.status.code, Code.INTERNAL);
    assert.match(a.status.message, /header list of \d+ octets.*65536/);
    assert.equal(b.status.code, Code.OK, b.status.message);
    assert.equal(b.headers["x-after"], "tail");
    assert.deepEqual(b.messages, [new Uint8Array([9])]);
    assert.equal(peer.accepted(), 1, "one connection throughout");
  });
});

Deno.test("createH2Upstream() maps non-200, non-gRPC and status-less answers", async () => {
  await withPeer(async (peer) => {
    await peer.handshake();
    const a = await readRequest(peer);
    await peer.write(
      peer.headers(a.id, [[":status", "404"], ["content-type", "text/html"]]),
      frame(
        FrameType.DATA,
        Flag.END_STREAM,
        a.id,
        new TextEncoder().encode("<h1>no</h1>"),
      ),
    );
    const b = await readRequest(peer);
    await peer.write(
      peer.headers(
        b.id,
        [[":status", "200"], ["content-type", "text/plain"]],
        true,
      ),
    );
    const c = await readRequest(peer);
    await peer.write(
      peer.headers(c.id, [[":status", "200"], [
        "content-type",
        "application/grpc",
      ]]),
      frame(FrameType.DATA, Flag.END_STREAM, c.id, new Uint8Array([0, 0, 0])),
    );
    const d = await readRequest(peer);
    await peer.write(
      peer.headers(d.id, [[":status", "200"], [
        "content-type",
        "application/grpc",
      ]]),
      frame(FrameType.DATA, 0, d.id, concat([new Uint8Array([0]), u32(100)])),
      peer.headers(d.id, [["grpc-status", "0"]], true),
    );
    await serveEof(peer);
  }, async (up) => {
    const a = await drain(call(up));
    assert.equal(a.status.code, Code.UNIMPLEMENTED);
    assert.match(a.status.message, /HTTP 404/);
    const b = await drain(call(up));
    assert.equal(b.status.code, Code.UNKNOWN);
    const c = await drain(call(up));
    assert.equal(c.status.code, Code.INTERNAL);
    assert.match(c.status.message, /inside a frame/);
    const d = await drain(call(up));
    assert.equal(d.status.code, Code.RESOURCE_EXHAUSTED);
  }, { maxMessageBytes: 10 });
});

Deno.test("createH2Upstream() keeps settings from the peer in order: a raised window releases a blocked upload", async () => {
  const body = bytes(100_000, 3);
  await withPeer(async (peer) => {
    await peer.handshake([[Setting.INITIAL_WINDOW_SIZE, 0]]);
    const { id } = await peer.requestHeaders();
    // Nothing can be sent yet; then open both windows in one go.
    await new Promise((r) => setTimeout(r, 50));
    await peer.write(
      settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 200_000]]),
      windowUpdateFrame(0, 200_000),
    );
    const parts: Uint8Array[] = [];
    while (true) {
      const f = await peer.until((f) =>
        f.streamId === id && f.type === FrameType.DATA
      );
      parts.push(f.payload);
      if (f.flags & Flag.END_STREAM) break;
    }
    assertSameBytes(concat(parts).subarray(5), body);
    await peer.write(peer.answer(id));
    await serveEof(peer);
  }, async (up) => {
    const r = await drain(up.call(PATH, messages(body), {
      metadata: {},
      signal: new AbortController().signal,
    }));
    assert.equal(r.status.code, Code.OK, r.status.message);
  });
});

/** Resolves null after `ms` (and clears its timer when `p` wins). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<null>((r) => timer = setTimeout(() => r(null), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("createH2Upstream() fails calls UNAVAILABLE after connectTimeoutMs when a TLS upstream never answers the handshake", async () => {
  const peer = startRawPeer(async (p) => {
    const sink = new Uint8Array(4096);
    try {
      while (await p.conn.read(sink) !== null) { /* silent */ }
    } catch {
      // Deno keeps a socket whose TLS handshake was cancelled open until
      // the peer closes it: peer.close() ends this read.
    }
  });
  const up = createH2Upstream(`https://127.0.0.1:${peer.port}`, {
    ...LIMIT,
    connectTimeoutMs: 200,
  });
  try {
    const r = await within(drain(call(up)), 3000);
    assert.ok(r, "the call never settled");
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.match(r.status.message, /connect timed out/);
  } finally {
    // The peer first: without the timeout, close() would wait on the handshake.
    await peer.close();
    await up.close();
  }
});

Deno.test("createH2Upstream() ends the connection with ENHANCE_YOUR_CALM when the peer floods PINGs without reading", async () => {
  const count = 600_000;
  await withPeer(async (peer) => {
    await peer.handshake();
    await peer.requestHeaders();
    const flood = new Uint8Array(17 * count);
    for (let i = 0; i < count; i++) {
      flood.set(frame(FrameType.PING, 0, 0, new Uint8Array(8)), 17 * i);
    }
    await peer.write(flood);
    await serveEof(peer);
  }, async (up) => {
    const r = await within(drain(call(up)), 10_000);
    assert.ok(r, "the call never settled");
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.match(r.status.message, /ENHANCE_YOUR_CALM/);
  });
});

/** A bare pool to `peer`: default windows, no keepalive. */
function poolTo(peer: RawPeer, options: { firstStreamId?: number } = {}) {
  return new H2Pool(`http://127.0.0.1:${peer.port}`, {
    streamWindow: 65535,
    connectionWindow: 65535,
    writeHighWater: 65536,
    settingsTimeoutMs: 5000,
    keepaliveIntervalMs: 0,
    keepaliveTimeoutMs: 10_000,
    ...options,
  });
}

Deno.test("H2Pool closes a connection that ran out of stream ids when its last stream ends", async () => {
  let eof!: () => void;
  const firstClosed = new Promise<void>((r) => eof = r);
  const ids: number[] = [];
  const peer = startRawPeer(async (p, index) => {
    await p.handshake();
    const req = await readRequest(p);
    ids.push(req.id);
    await p.write(p.answer(req.id));
    await serveEof(p);
    if (index === 0) eof();
  });
  const pool = poolTo(peer, { firstStreamId: MAX_STREAM_ID });
  const headers = new RequestHeaderEncoder("http", `127.0.0.1:${peer.port}`);
  const send = () =>
    new Promise<string>((resolve) => {
      const s = new H2Stream({
        onHeaders: (_, end) => end && resolve("ok"),
        onData() {},
        onReset: (code) => resolve(`reset ${code}`),
        onFail: resolve,
        onDrain() {},
      }, headers.build(PATH, {}, undefined));
      pool.place(s);
      s.end();
    });
  try {
    assert.equal(await send(), "ok");
    assert.notEqual(
      await within(firstClosed, 2000),
      null,
      "the exhausted connection stayed open",
    );
    assert.equal(await send(), "ok");
    assert.deepEqual(ids, [MAX_STREAM_ID, MAX_STREAM_ID]);
  } finally {
    await pool.close();
    await peer.close();
  }
});

/** Sends a stream on `pool` that is never answered; failures go to `log`. */
function holdStream(
  pool: H2Pool,
  headers: RequestHeaderEncoder,
  log: string[],
): void {
  const s = new H2Stream({
    onHeaders() {},
    onData() {},
    onReset: (code) => log.push(`reset ${code}`),
    onFail: (message) => log.push(message),
    onDrain() {},
  }, headers.build(PATH, {}, undefined));
  pool.place(s);
  s.end();
}

/**
 * Runs `fn` with a pool to a peer whose first connection allows one stream,
 * holds it unanswered and answers PINGs; `later` scripts every other
 * connection. `hold()` sends another such stream; none may fail.
 */
async function withFullPeer(
  later: (p: PeerConnection) => Promise<void>,
  fn: (pool: H2Pool, hold: () => void, peer: RawPeer) => Promise<void>,
) {
  const peer = startRawPeer(async (p, index) => {
    if (index > 0) return later(p);
    await p.handshake([[Setting.MAX_CONCURRENT_STREAMS, 1]]);
    await readRequest(p); // held open, never answered
    await serveEof(p);
  });
  const pool = poolTo(peer);
  const headers = new RequestHeaderEncoder("http", `127.0.0.1:${peer.port}`);
  const failed: string[] = [];
  try {
    await fn(pool, () => holdStream(pool, headers, failed), peer);
    assert.deepEqual(failed, []);
  } finally {
    await pool.close();
    await peer.close();
  }
}

Deno.test("H2Pool.ping() asks a full connection before it dials: a peer at its connection bound still answers for the calls it serves", async () => {
  // Later connections are closed at once, as a core at --max-connections
  // does.
  await withFullPeer(async () => {}, async (pool, hold, peer) => {
    hold();
    // The one connection is full once the peer's SETTINGS are in.
    assert.equal(await pool.ping(2000), true);
    assert.equal(await pool.ping(2000), true, "the full connection's PING");
    assert.equal(peer.accepted(), 1, "dialled although a connection serves");
    assert.equal(pool.size, 1);
  });
});

Deno.test("H2Pool.ping() asks a working connection, not one still dialling: a peer out of descriptors (connections left in its backlog) still answers for the calls it serves", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  // Later connections get no SETTINGS and nothing read, as when the core
  // cannot accept them: the dial hangs until settingsTimeoutMs.
  await withFullPeer(() => released, async (pool, hold, peer) => {
    try {
      hold();
      assert.equal(await pool.ping(2000), true);
      // A new call finds no room: the pool dials, and that dial hangs.
      hold();
      while (peer.accepted() < 2) await sleep(5);
      assert.equal(pool.size, 2);
      assert.equal(
        await pool.ping(1000),
        true,
        "the working connection's PING",
      );
    } finally {
      release();
    }
  });
});

const KEEPALIVE = { keepaliveIntervalMs: 100, keepaliveTimeoutMs: 100 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OK_HEADERS: [string, string][] = [
  [":status", "200"],
  ["content-type", "application/grpc"],
];

/**
 * Reads frames until EOF, logging the time and payload of every PING the
 * client sends, and acknowledges them if `answer`.
 */
async function logPings(
  peer: PeerConnection,
  log: { at: number; payload: Uint8Array }[],
  answer: boolean,
) {
  while (true) {
    const f = await peer.next();
    if (f === null) return;
    if (f.type !== FrameType.PING || f.flags & Flag.ACK) continue;
    log.push({ at: Date.now(), payload: f.payload });
    if (answer) await peer.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
  }
}

Deno.test("createH2Upstream() keepalive: a peer that answers PINGs keeps a silent stream alive past several intervals", async () => {
  const pings: { at: number; payload: Uint8Array }[] = [];
  await withPeer(async (peer) => {
    await peer.handshake();
    const req = await readRequest(peer);
    await peer.write(peer.headers(req.id, OK_HEADERS));
    const reading = logPings(peer, pings, true);
    await sleep(800);
    await peer.write(
      frame(FrameType.DATA, 0, req.id, encodeEnvelope(0, new Uint8Array([5]))),
      peer.headers(req.id, [["grpc-status", "0"]], true),
    );
    await reading;
  }, async (up) => {
    const r = await drain(call(up));
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.deepEqual(r.messages, [new Uint8Array([5])]);
  }, KEEPALIVE);
  assert.ok(pings.length >= 2, `${pings.length} keepalive PINGs`);
  assert.ok(pings.length <= 8, `${pings.length} keepalive PINGs`);
  for (let i = 1; i < pings.length; i++) {
    const gap = pings[i].at - pings[i - 1].at;
    assert.ok(gap >= 90, `PINGs ${gap} ms apart`);
  }
  // Not the health check's opaque data (which starts with 0).
  for (const p of pings) assert.notEqual(readUint32(p.payload, 0), 0);
});

Deno.test("createH2Upstream() keepalive: fails an open stream UNAVAILABLE when the peer stops answering and dials a new connection", async () => {
  const pings: { at: number; payload: Uint8Array }[] = [];
  await withPeer(async (peer, index) => {
    await peer.handshake();
    const req = await readRequest(peer);
    if (index === 0) {
      // Alive as far as TCP knows: reads everything, sends nothing.
      await peer.write(peer.headers(req.id, OK_HEADERS));
      await logPings(peer, pings, false);
      return;
    }
    await peer.write(peer.answer(req.id, [new Uint8Array([7])]));
    await serveEof(peer);
  }, async (up, peer) => {
    const first = call(up);
    await first.headers;
    const t0 = Date.now();
    const status = await within(first.status, 5000);
    const elapsed = Date.now() - t0;
    assert.ok(status, "the stream never failed");
    assert.equal(status.code, Code.UNAVAILABLE);
    assert.match(
      status.message,
      /upstream did not answer a keepalive ping within 100 ms/,
    );
    // Silence of 1-2 intervals, then the timeout.
    assert.ok(elapsed >= 150 && elapsed < 1000, `failed after ${elapsed} ms`);
    const second = await drain(call(up));
    assert.equal(second.status.code, Code.OK, second.status.message);
    assert.deepEqual(second.messages, [new Uint8Array([7])]);
    assert.equal(peer.accepted(), 2);
  }, KEEPALIVE);
  assert.equal(pings.length, 1, "one keepalive PING outstanding at most");
});

Deno.test("createH2Upstream() keepalive: sends no PINGs on a connection with no open streams", async () => {
  const pings: { at: number; payload: Uint8Array }[] = [];
  await withPeer(async (peer) => {
    await peer.handshake();
    const req = await readRequest(peer);
    await peer.write(peer.answer(req.id));
    await logPings(peer, pings, true);
  }, async (up) => {
    const r = await drain(call(up));
    assert.equal(r.status.code, Code.OK, r.status.message);
    await sleep(600);
  }, KEEPALIVE);
  assert.equal(pings.length, 0);
});

Deno.test("createH2Upstream() keepalive: sends no PINGs while the peer keeps sending DATA", async () => {
  const pings: { at: number; payload: Uint8Array }[] = [];
  const count = 25;
  await withPeer(async (peer) => {
    await peer.handshake();
    const req = await readRequest(peer);
    await peer.write(peer.headers(req.id, OK_HEADERS));
    const reading = logPings(peer, pings, true);
    for (let i = 0; i < count; i++) {
      await sleep(30);
      await peer.write(
        frame(
          FrameType.DATA,
          0,
          req.id,
          encodeEnvelope(0, new Uint8Array([i])),
        ),
      );
    }
    await peer.write(peer.headers(req.id, [["grpc-status", "0"]], true));
    await reading;
  }, async (up) => {
    const r = await drain(call(up));
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.equal(r.messages.length, count);
  }, KEEPALIVE);
  assert.equal(pings.length, 0);
});
