/**
 * The core's request budget (http2/server/request_budget.ts) on real sockets:
 * raw-frame clients send length prefixes and part of each message, never
 * the rest. The core's own accounting (`snapshot().unfinishedRequestBytes`)
 * is asserted on, not RSS.
 */
import assert from "node:assert/strict";
import { ErrorCode, FrameType } from "../protocol/http2/frames.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { frame, PeerConnection, u32 } from "./fixtures/h2_raw_peer.ts";
import {
  connectionError,
  rawClient,
  streamError,
  untilEnd,
} from "./fixtures/h2_raw_client.ts";
import { eventually, startCore } from "./support/core.ts";
import { listenH2 } from "../http2/server/listener.ts";
import { RequestBudget } from "../http2/server/request_budget.ts";
import type { H2ServerStream } from "../http2/server/stream.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** Body bytes sent after each prefix (56 frames of 16 KiB): never all. */
const PART = 56 * 16 * KiB;

const budgetCore = () =>
  startCore({
    transport: "h2",
    maxMessageBytes: MiB,
    requestBufferPerConnection: 3 * MiB,
    requestBufferTotal: 4 * MiB,
  });

/** HEADERS of a call on `path`, then a 1 MiB prefix and PART bytes. */
function unfinishedCall(peer: PeerConnection, id: number, path: string) {
  const prefix = new Uint8Array([0, 0, 0x10, 0, 0]); // 1 MiB declared
  const frames = [
    peer.headers(id, [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
    ]),
    frame(FrameType.DATA, 0, id, prefix),
  ];
  for (let sent = 0; sent < PART; sent += 16 * KiB) {
    frames.push(frame(FrameType.DATA, 0, id, new Uint8Array(16 * KiB)));
  }
  return frames;
}

/** The grpc-status and grpc-message of a stream answered trailers-only. */
async function status(peer: PeerConnection, id: number) {
  const frames = await untilEnd(peer, id);
  const head = frames.find((f) => f.type === FrameType.HEADERS);
  assert.ok(head, `stream ${id} answered with HEADERS`);
  const fields = new Map(peer.decoder.decode(head.payload));
  return {
    code: fields.get("grpc-status"),
    message: fields.get("grpc-message"),
  };
}

Deno.test("request budget: unfinished messages are counted per stream and given back when the streams end", async () => {
  await using f = await budgetCore();
  using peer = await rawClient(f.core.port);
  const paths = [
    chatPaths.SendMessage,
    chatPaths.UploadMessages,
    chatPaths.Chat,
  ];
  for (const [i, path] of paths.entries()) {
    await peer.write(...unfinishedCall(peer, 1 + 2 * i, path));
  }
  const held = 3 * (5 + PART);
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === held,
    "three unfinished messages held",
  );
  // The client cancels one: its bytes are given back.
  await peer.write(frame(FrameType.RST_STREAM, 0, 3, u32(ErrorCode.CANCEL)));
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 2 * (5 + PART),
    "the cancelled stream's bytes given back",
  );
  peer[Symbol.dispose]();
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 0,
    "all given back when the connection closes",
  );
});

Deno.test("request budget: a completed message is given back while its stream stays open", async () => {
  await using f = await budgetCore();
  using peer = await rawClient(f.core.port);
  await peer.write(...unfinishedCall(peer, 1, chatPaths.UploadMessages));
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 5 + PART,
    "one unfinished message",
  );
  // The rest of the message (its body is not a valid request: the call
  // then fails, which also ends the stream; either way nothing is held).
  await peer.write(
    frame(FrameType.DATA, 0, 1, new Uint8Array(MiB - PART)),
  );
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 0,
    "nothing held once the message is whole",
  );
});

Deno.test("request budget: the call over a connection's budget ends RESOURCE_EXHAUSTED; the others go on", async () => {
  await using f = await budgetCore();
  using peer = await rawClient(f.core.port);
  for (const id of [1, 3, 5]) {
    await peer.write(...unfinishedCall(peer, id, chatPaths.UploadMessages));
  }
  // 3 x 896 KiB fit in 3 MiB; the fourth does not.
  await peer.write(...unfinishedCall(peer, 7, chatPaths.UploadMessages));
  const over = await status(peer, 7);
  assert.equal(over.code, "8");
  assert.match(over.message!, /on this connection/);
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 3 * (5 + PART),
    "the refused call's bytes are not held",
  );
  assert.equal(f.core.snapshot().openCalls >= 3, true, "the others are open");
});

Deno.test("request budget: a connection that keeps going over it gets GOAWAY(ENHANCE_YOUR_CALM)", async () => {
  await using f = await budgetCore();
  using peer = await rawClient(f.core.port);
  for (const id of [1, 3, 5]) {
    await peer.write(...unfinishedCall(peer, id, chatPaths.UploadMessages));
  }
  for (const id of [7, 9]) {
    await peer.write(...unfinishedCall(peer, id, chatPaths.UploadMessages));
    assert.equal((await status(peer, id)).code, "8");
  }
  await peer.write(...unfinishedCall(peer, 11, chatPaths.UploadMessages));
  assert.equal(await connectionError(peer), "ENHANCE_YOUR_CALM");
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 0,
    "the connection's bytes given back",
  );
  // The core serves on.
  const reply = await f.client.sendMessage({
    user: "u",
    room: "r",
    content: "still here",
  });
  assert.match(reply.messageId, /^msg_/);
});

Deno.test("request budget: the process-wide bound fails a call on another connection", async () => {
  await using f = await budgetCore();
  using first = await rawClient(f.core.port);
  using second = await rawClient(f.core.port);
  for (const id of [1, 3, 5]) {
    await first.write(...unfinishedCall(first, id, chatPaths.UploadMessages));
  }
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 3 * (5 + PART),
    "the first connection holds 2.6 MiB",
  );
  // 2.6 + 0.9 MiB fit in 4 MiB, 2.6 + 1.8 do not.
  await second.write(...unfinishedCall(second, 1, chatPaths.UploadMessages));
  await second.write(...unfinishedCall(second, 3, chatPaths.UploadMessages));
  const over = await status(second, 3);
  assert.equal(over.code, "8");
  assert.match(over.message!, /in all/);
});

Deno.test("request budget: a grpc-js call with a whole message near the limit is not affected", async () => {
  await using f = await budgetCore();
  const content = "x".repeat(PART);
  const reply = await f.client.sendMessage({ user: "u", room: "r", content });
  assert.match(reply.messageId, /^msg_/);
  assert.equal(f.core.snapshot().unfinishedRequestBytes, 0);
});

Deno.test("request budget: bytes that paused streams have not read count against the process-wide total", async () => {
  const budget = new RequestBudget(64 * MiB, 3 * MiB + KiB);
  const streams = new Map<number, H2ServerStream>();
  const listener = listenH2({
    hostname: "127.0.0.1",
    port: 0,
    requestBudget: budget,
    onStream(s) {
      streams.set(s.id, s);
      s.on("data", () => {});
      s.pause(); // a handler that does not read
    },
  });
  try {
    using peer = await rawClient(listener.port);
    // 1 MiB (a stream's window) of empty messages on each of three streams.
    const fill = (id: number) => [
      peer.headers(id, [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/x"],
        ["content-type", "application/grpc"],
      ]),
      ...Array.from(
        { length: 64 },
        () => frame(FrameType.DATA, 0, id, new Uint8Array(16 * KiB)),
      ),
    ];
    for (const id of [1, 3, 5]) await peer.write(...fill(id));
    await eventually(() => budget.queued === 3 * MiB, "3 MiB unread");
    assert.ok(budget.unfinished < 16, "the messages are complete");
    // A fourth stream's first bytes go over the total.
    await peer.write(...fill(7));
    assert.equal(await streamError(peer, 7), "ENHANCE_YOUR_CALM");
    await eventually(() => budget.queued === 3 * MiB, "the fourth dropped");
    await peer.write(frame(FrameType.RST_STREAM, 0, 1, u32(ErrorCode.CANCEL)));
    await eventually(() => budget.queued === 2 * MiB, "a reset gives back");
    peer[Symbol.dispose]();
    await eventually(() => budget.used === 0, "a close gives back the rest");
  } finally {
    listener.destroy();
    await listener.closed;
  }
});
