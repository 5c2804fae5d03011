/**
 * Who may speak, on the wire: a raw-frame HTTP/2 client sends what grpc-js
 * clients never do (a repeated `authorization` header, a reset while the
 * token is being verified), on the direct unary path and on grpc-js's own.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "../gen/chat_pb.ts";
import {
  ErrorCode,
  Flag,
  FrameType,
  pingFrame,
  rstStreamFrame,
} from "../protocol/http2/frames.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { frame, type PeerConnection } from "./fixtures/h2_raw_peer.ts";
import { rawClient } from "./fixtures/h2_raw_client.ts";
import { Access } from "../server/auth/access.ts";
import { createAuthenticator } from "../server/auth/authenticator.ts";
import { createTokenVerifier } from "../server/auth/token_verifier.ts";
import { bearer, hs256, SECRET } from "./support/auth.ts";
import { startCore, take } from "./support/core.ts";

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

/** A core whose check of `held` tokens waits until the test lets it go. */
async function coreHoldingTokens(held: Set<string>) {
  const real = await createTokenVerifier({ secret: SECRET, leewaySeconds: 0 });
  let started = () => {};
  let release = () => {};
  const gate = new Promise<void>((r) => release = r);
  const verifying = new Promise<void>((r) => started = r);
  const access = new Access({
    authenticate: createAuthenticator({
      verify: async (token) => {
        if (held.has(token)) {
          started();
          await gate;
        }
        return real(token);
      },
      leewaySeconds: 0,
    }),
  });
  return { f: await startCore({ access }), verifying, release };
}

Deno.test("auth: a direct unary call cancelled or past its deadline while its token is verified posts nothing", async () => {
  const cancelled = await hs256({ sub: "alice", jti: "cancelled" });
  const late = await hs256({ sub: "alice", jti: "late" });
  const held = await coreHoldingTokens(new Set([cancelled, late]));
  await using f = held.f;
  const watcher = f.newClient(bearer(await hs256({ sub: "watcher" })))
    .subscribeMessages({ room: "raw", user: "" });
  await take(watcher, 1);
  using peer = await rawClient(f.core.port);
  const auth = (
    t: string,
  ): [string, string] => ["authorization", `Bearer ${t}`];
  await peer.write(
    ...sendMessage(peer, 1, [auth(cancelled)], "cancelled"),
    ...sendMessage(peer, 3, [auth(late), ["grpc-timeout", "50m"]], "late"),
  );
  await held.verifying;
  // The client cancels call 1; the PING's answer says the core has read it.
  await peer.write(
    rstStreamFrame(1, ErrorCode.CANCEL),
    pingFrame(new Uint8Array(8)),
  );
  await peer.until((f) =>
    f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0
  );
  // Call 3's deadline passes too.
  await new Promise((r) => setTimeout(r, 80));
  held.release();
  assert.equal((await statusOf(peer, 3)).status, "4", "DEADLINE_EXCEEDED");
  const kept = await hs256({ sub: "alice", jti: "kept" });
  await peer.write(...sendMessage(peer, 5, [auth(kept)], "kept"));
  assert.equal((await statusOf(peer, 5)).status, "0");
  // The room sees only the call that stayed.
  const [got] = await take(watcher, 1);
  assert.equal(got.content, "kept");
  watcher.cancel();
});
