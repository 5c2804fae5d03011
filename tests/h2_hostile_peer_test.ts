/**
 * The core's HTTP/2 server (h2 transport) against the attacks it must keep
 * surviving: an HPACK bomb (more in h2_header_list_test.ts), SETTINGS and PING floods from a peer that does
 * not read, a connection window overflow, a 4 GiB length prefix, a gzip
 * bomb and 1,001 streams on one connection. (The CONTINUATION flood and
 * malformed frames are in core_h2_transport_test.ts, rapid reset in
 * h2_server_test.ts, slowloris in both.) Each ends with the core serving a
 * real grpc-js call.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { gzipSync } from "node:zlib";
import {
  Flag,
  FrameType,
  MAX_WINDOW,
  pingFrame,
  settingsFrame,
  windowUpdateFrame,
} from "../protocol/http2/frames.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { concat, frame, PeerConnection } from "./fixtures/h2_raw_peer.ts";
import {
  connectionError,
  grpcRequest as call,
  rawClient,
  streamError,
  untilEnd,
} from "./fixtures/h2_raw_client.ts";
import { eventually, startCore } from "./support/core.ts";

type Core = Awaited<ReturnType<typeof startCore>>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function servesOn(f: Core) {
  const reply = await f.client.sendMessage({
    user: "probe",
    room: "probe",
    content: "still here",
  });
  assert.match(reply.messageId, /^msg_/);
}

async function grpcStatus(peer: PeerConnection, id: number) {
  const frames = await untilEnd(peer, id);
  const blocks = frames.filter((f) => f.type === FrameType.HEADERS);
  const last = new Map(peer.decoder.decode(blocks.at(-1)!.payload));
  return { code: last.get("grpc-status"), message: last.get("grpc-message") };
}

/** Writes `bytes` over and over; true when the socket stopped taking them. */
async function heldBack(peer: PeerConnection, bytes: Uint8Array) {
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    const wrote = peer.write(bytes).then(() => true, () => "closed");
    const result = await Promise.race([wrote, sleep(500).then(() => false)]);
    if (result !== true) return true;
  }
  return false;
}

Deno.test("hostile peer: an HPACK bomb (one indexed entry repeated past the header list limit) is answered RESOURCE_EXHAUSTED on its stream, the connection goes on", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  // A 4,000-byte value added to the dynamic table, then referenced by one
  // byte 20 times: 80 KB of headers from 4 KB on the wire.
  const value = new Uint8Array(4000).fill(0x61);
  const block = concat([
    new Uint8Array([0x40, 0x01, 0x78, 0x7f, 0xa1, 0x1e]),
    value,
    new Uint8Array(20).fill(0x80 | 62),
  ]);
  await peer.write(
    frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, block),
  );
  // Well-formed, so decoded (the excess counted, not kept) and refused as
  // a stream error (RFC 9113 §10.5.1), not a connection error.
  const status = await grpcStatus(peer, 1);
  assert.equal(status.code, "8");
  assert.match(status.message ?? "", /exceeds the limit of 65536/);
  // The same connection takes the next call (no message: grpc-js answers
  // it with a status of its own).
  await peer.write(
    call(peer, 3, chatPaths.SendMessage),
    frame(FrameType.DATA, Flag.END_STREAM, 3),
  );
  assert.match((await grpcStatus(peer, 3)).code ?? "", /^\d+$/);
  await servesOn(f);
});

for (
  const [what, bytes] of [
    ["SETTINGS", settingsFrame([])],
    ["PING", pingFrame(new Uint8Array(8))],
  ] as const
) {
  Deno.test(`hostile peer: a ${what} flood from a peer that never reads is held back or ended`, async () => {
    await using f = await startCore({ transport: "h2" });
    using peer = await rawClient(f.core.port);
    const flood = concat(Array.from({ length: 10_000 }, () => bytes));
    assert.ok(await heldBack(peer, flood), "the core stopped taking frames");
    await servesOn(f);
  });
}

Deno.test("hostile peer: WINDOW_UPDATEs taking the connection window above 2^31-1 are FLOW_CONTROL_ERROR", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  await peer.write(
    windowUpdateFrame(0, MAX_WINDOW),
    windowUpdateFrame(0, MAX_WINDOW),
  );
  assert.equal(await connectionError(peer), "FLOW_CONTROL_ERROR");
  await servesOn(f);
});

Deno.test("hostile peer: a 4 GiB length prefix is RESOURCE_EXHAUSTED before any body, on the unary and streaming paths", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  const prefix = new Uint8Array([0, 0xff, 0xff, 0xff, 0xff]);
  for (
    const [id, path] of [
      [1, chatPaths.SendMessage],
      [3, chatPaths.UploadMessages],
    ] as const
  ) {
    await peer.write(
      call(peer, id, path),
      frame(FrameType.DATA, 0, id, prefix),
    );
    const status = await grpcStatus(peer, id);
    assert.equal(status.code, "8", path);
  }
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 0,
    "nothing held",
  );
  await servesOn(f);
});

Deno.test("hostile peer: a gzip bomb (20 KiB inflating to 20 MiB) is RESOURCE_EXHAUSTED", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  const bomb = gzipSync(Buffer.alloc(20 * 1024 * 1024));
  assert.ok(bomb.byteLength < 64 * 1024);
  const message = new Uint8Array(5 + bomb.byteLength);
  message[0] = 1;
  new DataView(message.buffer).setUint32(1, bomb.byteLength);
  message.set(bomb, 5);
  const frames = [call(peer, 1, chatPaths.SendMessage, [[
    "grpc-encoding",
    "gzip",
  ]])];
  for (let at = 0; at < message.byteLength; at += 16384) {
    const end = at + 16384 >= message.byteLength;
    frames.push(
      frame(
        FrameType.DATA,
        end ? Flag.END_STREAM : 0,
        1,
        message.subarray(at, at + 16384),
      ),
    );
  }
  await peer.write(...frames);
  assert.equal((await grpcStatus(peer, 1)).code, "8");
  await servesOn(f);
});

Deno.test("hostile peer: 1,001 open streams on one connection: the last is REFUSED_STREAM, the others stay", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  const opens = [];
  for (let i = 0; i < 1001; i++) {
    opens.push(call(peer, 1 + 2 * i, chatPaths.UploadMessages));
  }
  await peer.write(...opens);
  assert.equal(await streamError(peer, 2001), "REFUSED_STREAM");
  await eventually(
    () => f.core.snapshot().openCalls === 1000,
    "1,000 calls open",
  );
  await servesOn(f);
});
