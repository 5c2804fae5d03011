/**
 * HPACK against a real HTTP/2 peer (node:http2) on a raw socket.
 *
 * @module
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import {
  type HeaderField,
  HpackDecoder,
  HpackEncoder,
} from "../protocol/http2/hpack.ts";
import { CLIENT_PREFACE, Flag, FrameType } from "../protocol/http2/frames.ts";
import { frame } from "./fixtures/h2_raw_peer.ts";

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Uint8Array;
}

/** Reads whole frames off a connection. */
async function* readFrames(conn: Deno.Conn): AsyncGenerator<Frame> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(16384);
  for (;;) {
    while (buf.length >= 9) {
      const len = (buf[0] << 16) | (buf[1] << 8) | buf[2];
      if (buf.length < 9 + len) break;
      yield {
        type: buf[3],
        flags: buf[4],
        stream: new DataView(buf.buffer, buf.byteOffset).getUint32(5) &
          0x7fffffff,
        payload: buf.slice(9, 9 + len),
      };
      buf = buf.slice(9 + len);
    }
    const n = await conn.read(chunk);
    if (n === null) return;
    const joined = new Uint8Array(buf.length + n);
    joined.set(buf);
    joined.set(chunk.subarray(0, n), buf.length);
    buf = joined;
  }
}

/** The header block of a HEADERS payload, padding and priority removed. */
function headerBlock(f: Frame): Uint8Array {
  let start = 0;
  let end = f.payload.length;
  if (f.flags & Flag.PADDED) {
    end -= f.payload[0];
    start = 1;
  }
  if (f.flags & Flag.PRIORITY) start += 5;
  return f.payload.subarray(start, end);
}

Deno.test("HpackEncoder and HpackDecoder interoperate with node:http2", async () => {
  const seen: Record<string, string | string[] | undefined>[] = [];
  const server = http2.createServer();
  server.on("stream", (
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
  ) => {
    seen.push({ ...headers });
    stream.respond({
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-encoding": "identity",
      "x-served-by": "node-http2",
      "x-echo": String(headers["x-user"]),
      "x-latin1": "caf\u00e9",
    }, { endStream: true });
  });
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve())
  );
  const { port } = server.address() as AddressInfo;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const encoder = new HpackEncoder();
    const request: HeaderField[] = [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", "/x"],
      [":authority", `127.0.0.1:${port}`],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ["x-user", "ann"],
      ["x-long", "z".repeat(300)],
    ];
    const block = encoder.encode(request);
    const flags = Flag.END_STREAM | Flag.END_HEADERS;
    const parts = [
      CLIENT_PREFACE,
      frame(FrameType.SETTINGS, 0, 0, new Uint8Array(0)),
      frame(FrameType.HEADERS, flags, 1, block),
      frame(FrameType.HEADERS, flags, 3, block),
    ];
    for (const part of parts) {
      for (let off = 0; off < part.length;) {
        off += await conn.write(part.subarray(off));
      }
    }

    const decoder = new HpackDecoder();
    const responses = new Map<number, HeaderField[]>();
    const blockSizes: number[] = [];
    let pending: { stream: number; parts: Uint8Array[] } | undefined;
    for await (const f of readFrames(conn)) {
      if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK)) {
        await conn.write(
          frame(FrameType.SETTINGS, Flag.ACK, 0, new Uint8Array(0)),
        );
      }
      if (f.type === FrameType.HEADERS) {
        pending = { stream: f.stream, parts: [headerBlock(f)] };
      } else if (f.type === FrameType.CONTINUATION && pending) {
        pending.parts.push(f.payload);
      } else continue;
      if (!(f.flags & Flag.END_HEADERS)) continue;
      const joined = new Uint8Array(
        pending!.parts.reduce((n, p) => n + p.length, 0),
      );
      let off = 0;
      for (const p of pending!.parts) {
        joined.set(p, off);
        off += p.length;
      }
      blockSizes.push(joined.length);
      responses.set(pending!.stream, decoder.decode(joined));
      pending = undefined;
      if (responses.size === 2) break;
    }

    assert.equal(seen.length, 2);
    for (const headers of seen) {
      for (const [name, value] of request) {
        assert.equal(headers[name], value, name);
      }
    }
    for (const stream of [1, 3]) {
      const fields = responses.get(stream);
      assert.ok(fields, `response on stream ${stream}`);
      const map = new Map(fields);
      assert.equal(map.get(":status"), "200");
      assert.equal(map.get("content-type"), "application/grpc");
      assert.equal(map.get("grpc-encoding"), "identity");
      assert.equal(map.get("x-served-by"), "node-http2");
      assert.equal(map.get("x-echo"), "ann");
      assert.equal(map.get("x-latin1"), "caf\u00e9");
    }
    // The peer indexed the first response, so the second refers to it.
    assert.ok(decoder.tableSize > 0, "peer added to the dynamic table");
    assert.ok(
      blockSizes[1] < blockSizes[0],
      `second block ${blockSizes[1]} < first ${blockSizes[0]}`,
    );
  } finally {
    conn.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
