/**
 * listenH2() (http2/server/) under a hostile or careless peer, without grpc-js:
 * window accounting of unread data, a peer that never reads, tiny frames,
 * rapid reset. Real sockets on 127.0.0.1; the peer is the raw-frame fixture.
 */
import assert from "node:assert/strict";
import { type H2Listener, listenH2 } from "../http2/server/listener.ts";
import type { H2ServerStream } from "../http2/server/stream.ts";
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  FrameType,
  readUint32,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "../protocol/http2/frames.ts";
import {
  concat,
  type Frame,
  frame,
  PeerConnection,
  u32,
} from "./fixtures/h2_raw_peer.ts";
import { eventually } from "./support/core.ts";

type OnStream = (stream: H2ServerStream) => void;

async function setup(
  onStream: OnStream,
  options: {
    connectionWindow?: number;
    streamWindow?: number;
    handshakeTimeoutMs?: number;
    calmGraceMs?: number;
  } = {},
  settings: [number, number][] = [],
): Promise<
  { listener: H2Listener; peer: PeerConnection } & AsyncDisposable
> {
  const listener = listenH2({
    hostname: "127.0.0.1",
    port: 0,
    ...options,
    onStream: (s) => onStream(s),
  });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.port,
  });
  const peer = new PeerConnection(conn);
  await peer.write(CLIENT_PREFACE, settingsFrame(settings));
  return {
    listener,
    peer,
    async [Symbol.asyncDispose]() {
      try {
        conn.close();
      } catch { /* closed already */ }
      listener.destroy();
      await listener.closed;
    },
  };
}

function request(peer: PeerConnection, id: number, endStream = false) {
  return peer.headers(id, [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/x"],
    ["content-type", "application/grpc"],
  ], endStream);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads frames in the background, summing connection WINDOW_UPDATEs and
 * keeping the last GOAWAY's code and last stream, and every frame.
 */
function watch(peer: PeerConnection) {
  const seen = {
    credit: 0,
    goaway: undefined as number | undefined,
    lastStream: undefined as number | undefined,
    frames: [] as Frame[],
  };
  const done = (async () => {
    while (true) {
      const f = await peer.next().catch(() => null);
      if (f === null) return;
      seen.frames.push(f);
      if (f.type === FrameType.WINDOW_UPDATE && f.streamId === 0) {
        seen.credit += readUint32(f.payload, 0);
      }
      if (f.type === FrameType.GOAWAY) {
        seen.goaway = readUint32(f.payload, 4);
        seen.lastStream = readUint32(f.payload, 0);
      }
    }
  })();
  return { seen, done };
}

/**
 * setup() whose handler keeps the open streams by id (`onStream` may answer
 * one as it comes), the peer's frames watched and our SETTINGS acknowledged.
 */
async function withOpenStreams(
  options: Parameters<typeof setup>[1] = {},
  onStream: OnStream = () => {},
) {
  const open = new Map<number, H2ServerStream>();
  const t = await setup((s) => {
    open.set(s.id, s);
    s.on("close", () => open.delete(s.id));
    onStream(s);
  }, options);
  const w = watch(t.peer);
  await t.peer.write(settingsFrame([], true));
  return { ...t, open, w };
}

/** `count` streams from id `from` on, each opened and reset at once. */
function rapidResets(peer: PeerConnection, from: number, count: number) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const id = from + 2 * i;
    out.push(
      request(peer, id),
      frame(FrameType.RST_STREAM, 0, id, u32(ErrorCode.CANCEL)),
    );
  }
  return concat(out);
}

for (
  const [how, end] of [
    [
      "reset by the client",
      async (_s: H2ServerStream, p: PeerConnection, id: number) => {
        await p.write(
          frame(FrameType.RST_STREAM, 0, id, u32(ErrorCode.CANCEL)),
        );
      },
    ],
    ["ended by the server", (s: H2ServerStream) => {
      s.respond({ ":status": 200, "grpc-status": "3" }, { endStream: true });
      return Promise.resolve();
    }],
  ] as const
) {
  Deno.test(`listenH2(): unread data of a stream ${how} returns to the connection window`, async () => {
    const streams = new Map<number, H2ServerStream>();
    await using t = await setup((s) => {
      streams.set(s.id, s);
      s.on("data", () => {});
      s.pause(); // as grpc-js does until the handler reads
    }, { connectionWindow: 128 * 1024, streamWindow: 64 * 1024 });
    const w = watch(t.peer);
    // Two paused streams of 64 KiB each fill the 128 KiB connection window.
    for (const id of [1, 3]) {
      await t.peer.write(
        request(t.peer, id),
        ...Array.from(
          { length: 4 },
          () => frame(FrameType.DATA, 0, id, new Uint8Array(16384)),
        ),
      );
      await sleep(30);
      await end(streams.get(id)!, t.peer, id);
    }
    await sleep(100);
    const initial = 128 * 1024 - 65535;
    assert.equal(w.seen.credit - initial, 128 * 1024, "all of it back");
    // And the connection takes more data.
    await t.peer.write(
      request(t.peer, 5),
      frame(FrameType.DATA, Flag.END_STREAM, 5, new Uint8Array(16384)),
    );
    await sleep(50);
    assert.equal(w.seen.goaway, undefined);
  });
}

Deno.test("listenH2(): a connection error closes the socket of a peer that never reads", async () => {
  await using t = await setup(
    (s) => {
      const big = new Uint8Array(64 * 1024);
      const fill = () => {
        while (!s.destroyed && s.write(big)) { /* until full */ }
      };
      s.on("drain", fill);
      fill();
    },
    {},
    [[Setting.INITIAL_WINDOW_SIZE, 0x7fffffff]],
  );
  await t.peer.write(
    settingsFrame([], true),
    windowUpdateFrame(0, 0x7fffffff - 65535),
    request(t.peer, 1, true),
  );
  await sleep(300);
  assert.equal(t.listener.connections, 1);
  // A malformed PING: GOAWAY that the peer will never read.
  await t.peer.write(frame(FrameType.PING, 0, 0, new Uint8Array(4)));
  const start = Date.now();
  while (t.listener.connections > 0 && Date.now() - start < 5000) {
    await sleep(50);
  }
  assert.equal(t.listener.connections, 0, "socket closed within the linger");
});

Deno.test("listenH2(): one-byte DATA frames into a paused stream come out joined, intact", async () => {
  let stream: H2ServerStream | undefined;
  const chunks: Uint8Array[] = [];
  await using t = await setup((s) => {
    stream = s;
    s.on("data", (c: Uint8Array) => chunks.push(c));
    s.pause();
  });
  const n = 20_000;
  const frames = [request(t.peer, 1)];
  for (let i = 0; i < n; i++) {
    frames.push(frame(FrameType.DATA, 0, 1, new Uint8Array([i & 0xff])));
  }
  await t.peer.write(concat(frames));
  await sleep(200);
  stream!.resume();
  await sleep(50);
  const all = concat(chunks);
  assert.equal(all.byteLength, n);
  for (let i = 0; i < n; i++) assert.equal(all[i], i & 0xff, `byte ${i}`);
  assert.ok(chunks.length <= 4, `${chunks.length} chunks for ${n} frames`);
});

Deno.test("listenH2(): a flowing stream's DATA frames of one read come out as one chunk per stream, in order", async () => {
  const chunks = new Map<number, Uint8Array[]>();
  const ended: number[] = [];
  await using t = await setup((s) => {
    chunks.set(s.id, []);
    s.on("data", (c: Uint8Array) => chunks.get(s.id)!.push(c));
    s.on("end", () => ended.push(s.id));
  });
  // Two streams' frames interleaved, 60 bytes each (one small gRPC
  // message a frame, as a client streaming small messages sends them).
  const frames = [request(t.peer, 1), request(t.peer, 3)];
  const n = 200;
  for (let i = 0; i < n; i++) {
    for (const id of [1, 3]) {
      const flags = i === n - 1 ? Flag.END_STREAM : 0;
      frames.push(
        frame(FrameType.DATA, flags, id, new Uint8Array(60).fill(i + id)),
      );
    }
  }
  await t.peer.write(concat(frames));
  await eventually(() => ended.length === 2, "both streams ended");
  for (const id of [1, 3]) {
    const got = chunks.get(id)!;
    const all = concat(got);
    assert.equal(all.byteLength, 60 * n);
    for (let i = 0; i < n; i++) {
      assert.equal(all[60 * i], (i + id) & 0xff, `stream ${id} frame ${i}`);
      assert.equal(all[60 * i + 59], (i + id) & 0xff);
    }
    // 24 KB in one write: a handful of socket reads, not 200 chunks.
    assert.ok(got.length <= 4, `${got.length} chunks for ${n} frames`);
  }
});

Deno.test("listenH2(): DATA before a RST_STREAM in the same read reaches the stream before it closes", async () => {
  const events: string[] = [];
  await using t = await setup((s) => {
    s.on("data", (c: Uint8Array) => events.push(`data ${c.byteLength}`));
    s.on("close", () => events.push(`close ${s.rstCode}`));
  });
  await t.peer.write(concat([
    request(t.peer, 1),
    frame(FrameType.DATA, 0, 1, new Uint8Array(10)),
    frame(FrameType.DATA, 0, 1, new Uint8Array(20)),
    frame(FrameType.RST_STREAM, 0, 1, u32(ErrorCode.CANCEL)),
  ]));
  await eventually(() => events.at(-1)?.startsWith("close") === true, "close");
  // One chunk when the frames came in one read (as a 100-byte write does).
  assert.deepEqual(events, ["data 30", `close ${ErrorCode.CANCEL}`]);
});

Deno.test("listenH2(): rapid reset (open and reset streams without end) ends with ENHANCE_YOUR_CALM", async () => {
  let opened = 0;
  await using t = await setup(() => opened++);
  const w = watch(t.peer);
  await t.peer.write(settingsFrame([], true));
  // Cancelling as many streams as may be open at once is fine.
  await t.peer.write(rapidResets(t.peer, 1, 1000));
  await sleep(100);
  assert.equal(w.seen.goaway, undefined, "a burst of 1000 resets is allowed");
  await t.peer.write(rapidResets(t.peer, 2001, 1000));
  await w.done;
  assert.equal(w.seen.goaway, ErrorCode.ENHANCE_YOUR_CALM);
  assert.ok(opened < 2000, `${opened} streams reached the application`);
  assert.equal(t.listener.resetFloods, 1);
});

Deno.test("listenH2(): resets of streams older than a second are not rapid resets: 3000 in 3 s leave the connection serving", async () => {
  await using t = await withOpenStreams({}, (s) => {
    if (s.id === 6001) {
      s.respond({ ":status": 200, "grpc-status": "0" }, { endStream: true });
    }
  });
  const { open, w } = t;
  // Three times as many streams as may be open at once, each reset after
  // a second: what an edge forwards when its browsers leave together.
  let id = 1;
  for (let round = 0; round < 3; round++) {
    const ids = Array.from({ length: 1000 }, (_, i) => id + 2 * i);
    id += 2000;
    await t.peer.write(concat(ids.map((i) => request(t.peer, i))));
    await eventually(() => open.size === 1000, `round ${round} opened`);
    await sleep(1050);
    await t.peer.write(
      concat(ids.map((i) => frame(FrameType.RST_STREAM, 0, i, u32(0x8)))),
    );
    await eventually(() => open.size === 0, `round ${round} reset`);
  }
  await t.peer.write(request(t.peer, 6001, true));
  await eventually(
    () => w.seen.frames.some((f) => f.streamId === 6001),
    "an answer on the next stream",
  );
  assert.equal(w.seen.goaway, undefined);
  assert.equal(t.listener.resetFloods, 0);
});

Deno.test("listenH2(): past the rapid-reset limit the connection's open streams run to their end, new ones are refused", async () => {
  await using t = await withOpenStreams();
  const { open, w } = t;
  // A call in flight (another browser's, behind an edge), then a flood.
  await t.peer.write(request(t.peer, 1));
  await eventually(() => open.has(1), "stream 1 open");
  await t.peer.write(rapidResets(t.peer, 3, 1100));
  await eventually(() => w.seen.goaway !== undefined, "GOAWAY");
  assert.equal(w.seen.goaway, ErrorCode.ENHANCE_YOUR_CALM);
  // The 1001st reset went over: streams up to it were taken.
  assert.equal(w.seen.lastStream, 3 + 2 * 1000);
  await eventually(
    () =>
      w.seen.frames.some((f) =>
        f.type === FrameType.RST_STREAM && f.streamId > w.seen.lastStream! &&
        readUint32(f.payload, 0) === ErrorCode.REFUSED_STREAM
      ),
    "streams after the GOAWAY refused",
  );
  assert.equal(t.listener.resetFloods, 1);
  // Stream 1 is still served, and the connection ends with it.
  assert.deepEqual([...open.keys()], [1]);
  open.get(1)!.respond({ ":status": 200, "grpc-status": "0" }, {
    endStream: true,
  });
  await w.done;
  const answer = w.seen.frames.find((f) => f.streamId === 1);
  assert.equal(answer?.type, FrameType.HEADERS);
  assert.ok((answer.flags & Flag.END_STREAM) !== 0);
});

Deno.test("listenH2(): a peer that goes on resetting after the GOAWAY is cut off", async () => {
  await using t = await withOpenStreams();
  const { open, w } = t;
  await t.peer.write(request(t.peer, 1));
  await eventually(() => open.has(1), "stream 1 open");
  await t.peer.write(rapidResets(t.peer, 3, 1001));
  await eventually(() => w.seen.goaway !== undefined, "GOAWAY");
  assert.ok(open.has(1), "stream 1 runs on after the GOAWAY");
  // Another burst of streams it may no longer open (the bucket refills
  // 100 a second meanwhile: some more than 1000).
  await t.peer.write(rapidResets(t.peer, 3 + 2 * 1001, 1100));
  await w.done;
  await eventually(() => open.size === 0, "stream 1 ended with the connection");
  assert.ok(
    !w.seen.frames.some((f) => f.streamId === 1),
    "stream 1 was never answered",
  );
  assert.equal(t.listener.resetFloods, 1);
});

Deno.test("listenH2(): after the GOAWAY for resets, resets of the streams it let run are not what cuts the connection off", async () => {
  await using t = await withOpenStreams();
  const { open, w } = t;
  // A user who stays, and 998 calls of users about to leave (a proxy's).
  const held = Array.from({ length: 998 }, (_, i) => 3 + 2 * i);
  await t.peer.write(
    concat([1, ...held].map((id) => request(t.peer, id))),
  );
  await eventually(() => open.size === 999, "999 streams open");
  // Quick calls cancelled at once: the 1001st goes over the limit.
  let id = 3 + 2 * 998;
  await t.peer.write(rapidResets(t.peer, id, 1001));
  id += 2 * 1001;
  await eventually(() => w.seen.goaway !== undefined, "GOAWAY");
  // Calls the proxy sent before the GOAWAY reached it, then its users
  // leave: every call the GOAWAY let run but the one who stays is reset.
  await t.peer.write(
    concat(Array.from({ length: 20 }, (_, i) => request(t.peer, id + 2 * i))),
    concat(held.map((i) => frame(FrameType.RST_STREAM, 0, i, u32(0x8)))),
  );
  await eventually(() => open.size <= 1, "the leavers' streams closed");
  await sleep(50);
  assert.equal(w.seen.goaway, ErrorCode.ENHANCE_YOUR_CALM);
  assert.ok(open.has(1), "the stayer's call runs on");
  open.get(1)!.respond({ ":status": 200, "grpc-status": "0" }, {
    endStream: true,
  });
  await w.done;
  const answer = w.seen.frames.find((f) => f.streamId === 1);
  assert.equal(answer?.type, FrameType.HEADERS);
});

Deno.test("listenH2(): a connection sent the GOAWAY for resets ends when its grace does, whatever streams it still has", async () => {
  await using t = await withOpenStreams({ calmGraceMs: 300 });
  const { open, w } = t;
  // A stream that never ends (a subscription) would keep it for ever, and
  // an edge whose connection is calmed again and again would pile them up.
  await t.peer.write(request(t.peer, 1));
  await eventually(() => open.has(1), "stream 1 open");
  await t.peer.write(rapidResets(t.peer, 3, 1001));
  await eventually(() => w.seen.goaway !== undefined, "GOAWAY");
  await sleep(100);
  assert.ok(open.has(1), "stream 1 runs on within the grace");
  let ended = false;
  void w.done.then(() => ended = true);
  await eventually(() => ended, "the connection ended after its grace");
  assert.equal(w.seen.goaway, ErrorCode.ENHANCE_YOUR_CALM);
  await eventually(() => open.size === 0, "stream 1 ended with the connection");
  await eventually(() => t.listener.connections === 0, "the connection closed");
});

// "MadeYouReset" (CVE-2025-8671): a peer need not send RST_STREAM to reset
// a stream it opened; a frame that breaks the protocol on it makes us reset
// it, and costs the peer as little.
for (
  const [how, provoke] of [
    [
      "a WINDOW_UPDATE of 0",
      (_p: PeerConnection, id: number) => [
        frame(FrameType.WINDOW_UPDATE, 0, id, u32(0)),
      ],
    ],
    [
      "a PRIORITY frame of 4 bytes",
      (_p: PeerConnection, id: number) => [
        frame(FrameType.PRIORITY, 0, id, u32(0)),
      ],
    ],
    [
      "DATA beyond its content-length",
      (p: PeerConnection, id: number) => [
        p.headers(id, [
          [":method", "POST"],
          [":scheme", "http"],
          [":path", "/x"],
          ["content-type", "application/grpc"],
          ["content-length", "0"],
        ]),
        frame(FrameType.DATA, 0, id, new Uint8Array(1)),
      ],
    ],
  ] as const
) {
  Deno.test(`listenH2(): streams the peer makes us reset with ${how} count as rapid resets`, async () => {
    let opened = 0;
    await using t = await setup(() => opened++);
    const w = watch(t.peer);
    await t.peer.write(settingsFrame([], true));
    const out = [];
    for (let i = 0; i < 3000; i++) {
      const id = 1 + 2 * i;
      const frames = provoke(t.peer, id);
      if (frames.length === 1) out.push(request(t.peer, id));
      out.push(...frames);
    }
    await t.peer.write(concat(out)).catch(() => {});
    await eventually(() => w.seen.goaway !== undefined, "GOAWAY");
    assert.equal(w.seen.goaway, ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(opened <= 1001, `${opened} streams reached the application`);
    assert.equal(t.listener.resetFloods, 1);
  });
}

Deno.test("listenH2(): a peer that sends requests but never reads the answers is held back by TCP", async () => {
  await using t = await setup((s) => {
    // Each request gets a small answer that the peer never reads.
    s.respond({ ":status": 200, "grpc-status": "0" }, { endStream: true });
  });
  let written = 0;
  let id = 1;
  const deadline = Date.now() + 3000;
  let stalled = false;
  while (Date.now() < deadline) {
    const batch = [];
    for (let i = 0; i < 1000; i++, id += 2) {
      batch.push(request(t.peer, id, true));
    }
    const bytes = concat(batch);
    const wrote = t.peer.write(bytes).then(() => true);
    const result = await Promise.race([wrote, sleep(500).then(() => false)]);
    if (!result) {
      stalled = true;
      break;
    }
    written += bytes.byteLength;
  }
  assert.ok(stalled, `never held back after ${written} bytes`);
  assert.ok(
    written < 64 * 1024 * 1024,
    `${written} bytes accepted before the stall`,
  );
});

Deno.test("listenH2(): a connection that never completes its preface is closed after the handshake timeout", async () => {
  const listener = listenH2({
    hostname: "127.0.0.1",
    port: 0,
    handshakeTimeoutMs: 200,
    onStream: () => {},
  });
  const silent = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.port,
  });
  const half = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.port,
  });
  try {
    await half.write(CLIENT_PREFACE.subarray(0, 10));
    await sleep(50);
    assert.equal(listener.connections, 2);
    const start = Date.now();
    const eof = async (conn: Deno.Conn) => {
      const buf = new Uint8Array(1024);
      while (await conn.read(buf).catch(() => null) !== null) { /* drain */ }
      return Date.now() - start;
    };
    const [a, b] = await Promise.all([eof(silent), eof(half)]);
    assert.ok(a < 2000 && b < 2000, `closed after ${a} and ${b} ms`);
    assert.equal(listener.connections, 0);
  } finally {
    silent.close();
    half.close();
    listener.close();
    await listener.closed;
  }
});

Deno.test("listenH2(): a header block above the peer's frame size goes out as HEADERS + CONTINUATION", async () => {
  const big = "v".repeat(40_000);
  await using t = await setup((s) => {
    s.respond({ ":status": 200, "x-big": big }, { endStream: true });
  });
  await t.peer.write(settingsFrame([], true), request(t.peer, 1, true));
  const first = await t.peer.until((f) => f.type === FrameType.HEADERS);
  assert.equal(first.flags & Flag.END_HEADERS, 0);
  assert.equal(first.flags & Flag.END_STREAM, Flag.END_STREAM);
  assert.ok(first.payload.byteLength <= 16384);
  const parts = [first.payload];
  let frames = 1;
  while (true) {
    const c = await t.peer.next();
    assert.equal(c?.type, FrameType.CONTINUATION);
    assert.equal(c!.streamId, 1);
    parts.push(c!.payload);
    frames++;
    if (c!.flags & Flag.END_HEADERS) break;
  }
  assert.ok(frames >= 3, `${frames} frames`);
  assert.deepEqual(t.peer.decoder.decode(concat(parts)), [
    [":status", "200"],
    ["x-big", big],
  ]);
});
