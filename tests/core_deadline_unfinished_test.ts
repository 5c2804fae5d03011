/**
 * A call with a `grpc-timeout` whose request never finishes (half a
 * message, or no body at all, and no END_STREAM) ends DEADLINE_EXCEEDED at
 * its deadline on every path: the direct unary and server-streaming paths
 * (SendMessage, SubscribeMessages) as grpc-js's own (UploadMessages). The
 * direct paths used to wait for the rest of the body before saying so, and
 * held the stream and its unfinished bytes until then.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { Flag, FrameType } from "../protocol/http2/frames.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { frame, type PeerConnection } from "./fixtures/h2_raw_peer.ts";
import { grpcRequest, rawClient } from "./fixtures/h2_raw_client.ts";
import { eventually, startCore } from "./support/core.ts";

const sendBody = encodeEnvelope(
  0,
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, {
      user: "late",
      room: "deadline",
      content: "x".repeat(200),
    }),
  ),
);
const subscribeBody = encodeEnvelope(
  0,
  toBinary(
    SubscribeRequestSchema,
    create(SubscribeRequestSchema, { user: "late", room: "deadline" }),
  ),
);

/** How each stream in `ids` ended: grpc-status, grpc-message, when. */
async function endings(peer: PeerConnection, ids: number[]) {
  const out = new Map<
    number,
    { code?: string; message?: string; rst?: boolean; at: number }
  >();
  while (ids.some((id) => !out.has(id))) {
    const f = await peer.until((f) => ids.includes(f.streamId));
    if (out.has(f.streamId)) continue;
    if (f.type === FrameType.RST_STREAM) {
      out.set(f.streamId, { rst: true, at: performance.now() });
    } else if (
      f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0
    ) {
      const fields = new Map(peer.decoder.decode(f.payload));
      out.set(f.streamId, {
        code: fields.get("grpc-status"),
        message: fields.get("grpc-message"),
        at: performance.now(),
      });
    } else if (f.type === FrameType.HEADERS) {
      peer.decoder.decode(f.payload); // keep the HPACK table in step
    }
  }
  return out;
}

Deno.test(`deadline (h2 transport): a request still unfinished at its grpc-timeout ends DEADLINE_EXCEEDED then, on the direct paths as on grpc-js's`, async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  const cases = [
    [1, chatPaths.SendMessage, sendBody.subarray(0, 40)],
    [3, chatPaths.SendMessage, undefined],
    [5, chatPaths.SubscribeMessages, subscribeBody.subarray(0, 7)],
    [7, chatPaths.SubscribeMessages, undefined],
    [9, chatPaths.UploadMessages, sendBody.subarray(0, 40)],
  ] as const;
  const started = performance.now();
  for (const [id, path, part] of cases) {
    await peer.write(
      grpcRequest(peer, id, path, [["grpc-timeout", "300m"]]),
      ...(part === undefined ? [] : [frame(FrameType.DATA, 0, id, part)]),
    );
  }
  const ends = await endings(peer, cases.map(([id]) => id));
  for (const [id, path] of cases) {
    const end = ends.get(id)!;
    assert.equal(end.code, "4", `${path} (stream ${id}): ${end.message}`);
    assert.match(decodeURIComponent(end.message ?? ""), /^Deadline exceeded/);
    // At the deadline, not at the client timeout of the raw connection.
    assert.ok(end.at - started < 3000, `${path} ended after the deadline`);
  }
  await eventually(
    () => f.core.snapshot().unfinishedRequestBytes === 0,
    "the unfinished bytes are given back",
  );
  // The connection serves on.
  await peer.write(
    grpcRequest(peer, 11, chatPaths.SendMessage, [["grpc-timeout", "5S"]]),
    frame(FrameType.DATA, Flag.END_STREAM, 11, sendBody),
  );
  assert.equal((await endings(peer, [11])).get(11)!.code, "0");
});

Deno.test("deadline: a request finished in pieces before its deadline is answered once, and its timer answers nothing after", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  await peer.write(
    grpcRequest(peer, 1, chatPaths.SendMessage, [["grpc-timeout", "400m"]]),
    frame(FrameType.DATA, 0, 1, sendBody.subarray(0, 40)),
  );
  await new Promise((r) => setTimeout(r, 100));
  await peer.write(
    frame(FrameType.DATA, Flag.END_STREAM, 1, sendBody.subarray(40)),
  );
  const first = (await endings(peer, [1])).get(1)!;
  assert.equal(first.code, "0", String(first.message));
  // Past the deadline nothing more comes on stream 1.
  await new Promise((r) => setTimeout(r, 500));
  await peer.write(
    grpcRequest(peer, 3, chatPaths.SendMessage),
    frame(FrameType.DATA, Flag.END_STREAM, 3, sendBody),
  );
  const seen: number[] = [];
  while (true) {
    const fr = await peer.until(() => true);
    seen.push(fr.streamId);
    if (
      fr.streamId === 3 && fr.type === FrameType.HEADERS &&
      (fr.flags & Flag.END_STREAM) !== 0
    ) break;
  }
  assert.ok(!seen.includes(1), `frames after the end: ${seen}`);
});
