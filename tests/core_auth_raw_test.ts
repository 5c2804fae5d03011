/**
 * Who may speak, on the wire: a raw-frame HTTP/2 client sends what grpc-js
 * clients never do (a repeated `authorization` header, a reset while the
 * token is being verified), on the direct unary path and on grpc-js's own.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "../gen/chat_pb.ts";
import { Flag, FrameType } from "../protocol/http2/frames.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { frame, type PeerConnection } from "./fixtures/h2_raw_peer.ts";
import { rawClient } from "./fixtures/h2_raw_client.ts";
import { hs256, SECRET } from "./support/auth.ts";
import { startCore } from "./support/core.ts";

/** HEADERS of a SendMessage call with `extra` fields, then its one message. */
function sendMessage(
  peer: PeerConnection,
  id: number,
  extra: [string, string][],
  content: string,
): Uint8Array[] {
  const body = toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "", room: "raw", content }),
  );
  return [
    peer.headers(id, [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", chatPaths.SendMessage],
      [":authority", "core"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ...extra,
    ]),
    frame(FrameType.DATA, Flag.END_STREAM, id, encodeEnvelope(0, body)),
  ];
}

/** The grpc-status and grpc-message that end stream `id`. */
async function statusOf(
  peer: PeerConnection,
  id: number,
): Promise<{ status?: string; message?: string }> {
  while (true) {
    const f = await peer.until((f) => f.streamId === id);
    if (f.type === FrameType.RST_STREAM) throw new Error("stream reset");
    if (f.type !== FrameType.HEADERS) continue;
    const fields = peer.decoder.decode(f.payload);
    if (f.flags & Flag.END_STREAM) {
      const get = (n: string) => fields.find(([k]) => k === n)?.[1];
      return { status: get("grpc-status"), message: get("grpc-message") };
    }
  }
}

Deno.test("auth: a repeated authorization header counts its first value, on the direct path and on grpc-js's", async () => {
  await using f = await startCore({ jwtSecret: SECRET });
  const good = `Bearer ${await hs256({ sub: "alice" })}`;
  using peer = await rawClient(f.core.port);
  // The direct path takes plain calls; a grpc-encoding sends one to grpc-js.
  const paths: [string, [string, string][]][] = [
    ["direct", []],
    ["grpc-js", [["grpc-encoding", "gzip"]]],
  ];
  let id = 1;
  for (const [name, extra] of paths) {
    for (
      const [first, second, want] of [
        [good, "Bearer not.a.token", "0"],
        ["Basic bm8=", good, "16"],
      ]
    ) {
      await peer.write(
        ...sendMessage(peer, id, [
          ...extra,
          ["authorization", first],
          ["authorization", second],
        ], "hi"),
      );
      const { status, message } = await statusOf(peer, id);
      assert.equal(status, want, `${name}, first ${first}: ${message}`);
      id += 2;
    }
  }
});
