/**
 * A request header list above the core's SETTINGS_MAX_HEADER_LIST_SIZE
 * (64 KiB) on the wire, against a real core over the h2 transport: it ends
 * its own stream (a trailers-only RESOURCE_EXHAUSTED for gRPC, 431
 * otherwise), not the connection other calls share (RFC 9113 §10.5.1); the
 * block is still decoded whole, so HPACK stays in step; a header block over
 * the hard cap on its encoded size still ends the connection.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "../gen/chat_pb.ts";
import {
  ErrorCode,
  Flag,
  FrameType,
  readUint32,
} from "../protocol/http2/frames.ts";
import { decodeGrpcMessage, encodeEnvelope } from "../protocol/mod.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { concat, frame, type PeerConnection } from "./fixtures/h2_raw_peer.ts";
import {
  bigFields,
  headerFrames,
  indexed,
  literal,
} from "./fixtures/hpack_writer.ts";
import { grpcRequest as request, rawClient } from "./fixtures/h2_raw_client.ts";
import { startCore } from "./support/core.ts";

const LIMIT = 64 * 1024;

function post(id: number, content: string, flags: number = Flag.END_STREAM) {
  const body = toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "raw", room: "hdr", content }),
  );
  return frame(FrameType.DATA, flags, id, encodeEnvelope(0, body));
}

/** What came back on one stream. */
interface Answer {
  headers: Map<string, string>[];
  rst?: number;
}

/**
 * Reads frames until every stream in `ids` ended; a GOAWAY fails the test
 * (the point is that the connection goes on).
 */
async function answers(
  peer: PeerConnection,
  ids: number[],
): Promise<Map<number, Answer>> {
  const out = new Map<number, Answer>(ids.map((id) => [id, { headers: [] }]));
  const open = new Set(ids);
  while (open.size > 0) {
    const f = await peer.next();
    if (f === null) throw new Error(`EOF with streams ${[...open]} open`);
    if (f.type === FrameType.GOAWAY) {
      assert.fail(`GOAWAY ${readUint32(f.payload, 4)}: a connection error`);
    }
    const a = out.get(f.streamId);
    if (f.type === FrameType.HEADERS) {
      // Every block moves the HPACK state, also of streams not waited for.
      const fields = new Map(peer.decoder.decode(f.payload));
      if (a === undefined) continue;
      a.headers.push(fields);
      if (f.flags & Flag.END_STREAM) open.delete(f.streamId);
    } else if (a !== undefined) {
      if (f.type === FrameType.DATA && f.flags & Flag.END_STREAM) {
        open.delete(f.streamId);
      } else if (f.type === FrameType.RST_STREAM) {
        a.rst = readUint32(f.payload, 0);
        open.delete(f.streamId);
      }
    }
  }
  return out;
}

const status = (a: Answer) => a.headers.at(-1)?.get("grpc-status");

Deno.test("h2 header list: one over the limit gets a trailers-only RESOURCE_EXHAUSTED on its stream; another stream of the connection completes, and a request after it using the table entries it added decodes right", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  // Stream 1: a call in progress (its request body comes later).
  await peer.write(request(peer, 1, chatPaths.SendMessage));
  // Stream 3: 17 fields of 4,000 octets (68.7 KB of list, as many encoded:
  // within the hard cap of 128 KiB). It adds two table entries, one before
  // the limit is crossed and one after, where its fields are only counted.
  const over = concat([
    indexed(3), // :method POST
    indexed(6), // :scheme http
    literal(":path", chatPaths.SendMessage),
    literal("content-type", "application/grpc", true), // dynamic 63 below
    literal("te", "trailers"),
    bigFields(17),
    literal(":path", chatPaths.SendMessage, true), // dynamic 62 below
  ]);
  assert.ok(over.byteLength > LIMIT && over.byteLength < 2 * LIMIT);
  await peer.write(headerFrames(3, over), post(3, "dropped"));
  const refused = (await answers(peer, [3])).get(3)!;
  assert.equal(refused.rst, undefined, "answered, not reset");
  assert.equal(refused.headers.length, 1, "trailers-only");
  const only = refused.headers[0];
  assert.equal(only.get(":status"), "200");
  assert.equal(only.get("grpc-status"), "8", "RESOURCE_EXHAUSTED");
  const message = decodeGrpcMessage(only.get("grpc-message") ?? "");
  assert.match(message, /header list of \d+ octets exceeds the limit of 65536/);
  // Stream 1 goes on: its body, its answer.
  await peer.write(post(1, "still here"));
  assert.equal(status((await answers(peer, [1])).get(1)!), "0");
  // Stream 5 names :path and content-type only by the entries stream 3's
  // block added: a table out of step would fail or route elsewhere.
  await peer.write(
    headerFrames(
      5,
      concat([indexed(3), indexed(6), indexed(62), indexed(63)]),
    ),
    post(5, "by index"),
  );
  const byIndex = (await answers(peer, [5])).get(5)!;
  assert.equal(
    byIndex.headers[0].get("content-type"),
    "application/grpc+proto",
  );
  assert.equal(status(byIndex), "0", "SendMessage ran: :path decoded right");
});

Deno.test("h2 header list: a non-gRPC request over the limit gets 431, and over-limit trailers end only their call", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  await peer.write(
    headerFrames(
      1,
      concat([
        indexed(3),
        indexed(6),
        indexed(4), // :path /
        literal("content-type", "text/plain"),
        bigFields(17),
      ]),
      true,
    ),
  );
  const plain = (await answers(peer, [1])).get(1)!;
  assert.equal(plain.headers[0].get(":status"), "431");
  // Trailers: a call whose request ends with a trailer list over the limit.
  await peer.write(
    request(peer, 3, chatPaths.SendMessage),
    post(3, "with big trailers", 0),
    headerFrames(3, bigFields(17), true),
  );
  const trailers = (await answers(peer, [3])).get(3)!;
  assert.equal(status(trailers), "8");
  assert.match(
    decodeGrpcMessage(trailers.headers.at(-1)!.get("grpc-message") ?? ""),
    /trailer list of \d+ octets/,
  );
  await peer.write(request(peer, 5, chatPaths.SendMessage), post(5, "after"));
  assert.equal(status((await answers(peer, [5])).get(5)!), "0");
});

Deno.test("h2 header list: an HPACK bomb (one entry indexed again and again) is counted, not kept, and answered on its stream", async () => {
  await using f = await startCore({ transport: "h2" });
  using peer = await rawClient(f.core.port);
  // A 4,000-octet entry, then 16,000 one-octet references to it: 64 MB of
  // header list from 20 KB on the wire.
  const block = concat([
    request(peer, 1, chatPaths.SendMessage).subarray(9),
    literal("x-bomb", "b".repeat(4000), true),
    new Uint8Array(16_000).fill(0x80 | 62),
  ]);
  await peer.write(headerFrames(1, block, true));
  assert.equal(status((await answers(peer, [1])).get(1)!), "8");
  await peer.write(request(peer, 3, chatPaths.SendMessage), post(3, "ok"));
  assert.equal(status((await answers(peer, [3])).get(3)!), "0");
});

for (
  const [what, bytes] of [
    ["200 KB", 200 * 1024],
    ["1.5 MiB", 1536 * 1024],
  ] as const
) {
  Deno.test(`h2 header list: a header block of ${what} encoded (over the hard cap, twice the list limit) still ends the connection with ENHANCE_YOUR_CALM`, async () => {
    await using f = await startCore({ transport: "h2" });
    using peer = await rawClient(f.core.port);
    const block = concat([
      request(peer, 1, chatPaths.SendMessage).subarray(9),
      bigFields(Math.ceil(bytes / 4010)),
    ]);
    // The core may close before it took every byte.
    const wrote = peer.write(headerFrames(1, block, true)).catch(() => {});
    const g = await peer.until((fr) => fr.type === FrameType.GOAWAY);
    assert.equal(readUint32(g.payload, 4), ErrorCode.ENHANCE_YOUR_CALM);
    await wrote;
    const reply = await f.client.sendMessage({
      user: "probe",
      room: "probe",
      content: "the core serves on",
    });
    assert.match(reply.messageId, /^msg_/);
  });
}
