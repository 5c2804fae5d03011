/**
 * The runtime's ceiling: the least a `chat.ChatService` server on Deno's
 * `node:http2` can do, with no grpc-js, no validation, no rooms and no
 * limits. It answers chatload's four scenarios with the same bytes as the
 * core (same decoders and encoders), so the gap between this server and the
 * seed's Go server is what Deno's HTTP/2 layer costs, and the gap between
 * this server and the core is what grpc-js and our own logic cost.
 *
 *   deno run -A bench/ceiling/main.ts --port 7000 [--batching]
 *
 * A measuring tool only (see BENCHMARKS.md, "The runtime's ceiling"); it is
 * not part of the product.
 *
 * @module
 */
import http2 from "node:http2";
import net from "node:net";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { UploadResponseSchema } from "../../gen/chat_pb.ts";
import {
  decodeChatPost,
  decodePost,
  decodeSendRequest,
} from "../../server/grpc/post_decoder.ts";
import { frameMessage } from "../../server/grpc/framing.ts";
import {
  ENVELOPE_HEADER_BYTES,
  readEnvelopeLength,
} from "../../protocol/envelope.ts";
import {
  encodeSendResponse,
  frameChatMessage,
  frameEchoMessage,
  welcomeMessage,
} from "../../server/grpc/messages.ts";
import { batchWrites, type CorkableSocket } from "../../http2/batch_writes.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "0" },
    batching: { type: "boolean", default: false },
  },
});

const HEADERS = { ":status": 200, "content-type": "application/grpc" };
const TRAILERS = { "grpc-status": "0" };
const rooms = new Map<string, Set<http2.ServerHttp2Stream>>();
let nextId = 0;

/** Splits gRPC frames out of a stream's chunks. */
function frames(
  stream: http2.ServerHttp2Stream,
  onMessage: (payload: Uint8Array) => void,
): void {
  let pending: Buffer | undefined;
  stream.on("data", (chunk: Buffer) => {
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    let off = 0;
    while (buf.length - off >= ENVELOPE_HEADER_BYTES) {
      const len = readEnvelopeLength(buf, off);
      const at = off + ENVELOPE_HEADER_BYTES;
      if (buf.length - at < len) break;
      onMessage(buf.subarray(at, at + len));
      off = at + len;
    }
    pending = off < buf.length ? buf.subarray(off) : undefined;
    buf = undefined as unknown as Buffer;
  });
}

function finish(stream: http2.ServerHttp2Stream, last?: Uint8Array): void {
  if (!stream.headersSent) stream.respond(HEADERS, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers(TRAILERS));
  if (last) stream.end(last);
  else stream.end();
}

function onStream(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
): void {
  stream.on("error", () => {});
  switch (headers[":path"]) {
    case "/chat.ChatService/SendMessage": {
      frames(stream, (payload) => {
        const req = decodeSendRequest(payload);
        const id = `msg_${++nextId}`;
        const nowMs = Date.now();
        const subs = rooms.get(req.room);
        if (subs) {
          const framed = frameChatMessage(
            id,
            req.user,
            req.content,
            req.room,
            nowMs,
          );
          for (const s of subs) s.write(framed);
        }
        finish(stream, frameMessage(encodeSendResponse(id, nowMs)));
      });
      return;
    }
    case "/chat.ChatService/SubscribeMessages": {
      frames(stream, (payload) => {
        const r = new BinaryReader(payload);
        let room = "", user = "";
        while (r.pos < r.len) {
          const [no, wt] = r.tag();
          if (no === 1) room = r.string();
          else if (no === 2) user = r.string();
          else r.skip(wt);
        }
        let subs = rooms.get(room);
        if (!subs) rooms.set(room, subs = new Set());
        subs.add(stream);
        stream.once("close", () => subs.delete(stream));
        stream.respond(HEADERS);
        stream.write(frameMessage(welcomeMessage(room, user)));
      });
      return;
    }
    case "/chat.ChatService/UploadMessages": {
      let count = 0;
      frames(stream, (payload) => {
        decodePost(payload);
        count++;
      });
      stream.once("end", () =>
        finish(
          stream,
          frameMessage(toBinary(
            UploadResponseSchema,
            create(UploadResponseSchema, {
              messageCount: count,
              success: true,
            }),
          )),
        ));
      return;
    }
    case "/chat.ChatService/Chat": {
      stream.respond(HEADERS, { waitForTrailers: true });
      frames(stream, (payload) => {
        stream.write(frameEchoMessage(decodeChatPost(payload)));
      });
      stream.once("end", () => finish(stream));
      return;
    }
    default:
      stream.respond({
        ":status": 200,
        "content-type": "application/grpc",
        "grpc-status": "12",
      }, { endStream: true });
  }
}

const server = http2.createServer();
server.on("stream", onStream);
if (args.values.batching) {
  // Accept through a net server so each socket can be batched like the core's.
  const tcp = net.createServer((socket) => {
    batchWrites(socket as unknown as CorkableSocket);
    server.emit("connection", socket);
  });
  tcp.listen(Number(args.values.port), "127.0.0.1");
} else {
  server.listen(Number(args.values.port), "127.0.0.1");
}
