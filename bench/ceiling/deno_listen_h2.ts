/**
 * The least an HTTP/2 server in JavaScript on `Deno.listen` can do: answer
 * every call with one fixed SendMessageResponse (`message_id` "x"), no
 * gRPC library, no validation, no rooms, one socket write per read. Only
 * unary calls are answered (other cases fail).
 *
 * Measured beside the seed under compare.sh, this is what showed that
 * Deno's node:http2, not the runtime, held the core's unary calls at 0.35x
 * (BENCHMARKS.md, "The runtime's ceiling"):
 *
 * ```sh
 * CASES="unary_c16_k1 unary_c64_k4" ../shared/bench/compare.sh \
 *   'deno run -A bench/ceiling/deno_listen_h2.ts --port {port}'
 * ```
 *
 * @module
 */
import { HpackDecoder, HpackEncoder } from "../../protocol/http2/hpack.ts";
import {
  Flag,
  FrameType,
  settingsFrame,
  writeFrameHeader,
  writeUint32,
} from "../../protocol/http2/frames.ts";

const port = Number(Deno.args[Deno.args.indexOf("--port") + 1] ?? 50051);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
const enc = new HpackEncoder();
const RESP_HEADERS = enc.encode([[":status", "200"], [
  "content-type",
  "application/grpc",
]]);
const TRAILERS = enc.encode([["grpc-status", "0"], ["grpc-message", "OK"]]);

class Out {
  buf = new Uint8Array(1 << 16);
  pos = 0;
  reserve(n: number) {
    if (this.pos + n <= this.buf.length) return;
    const g = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    g.set(this.buf.subarray(0, this.pos));
    this.buf = g;
  }
  frame(type: number, flags: number, id: number, payload: Uint8Array) {
    this.reserve(9 + payload.length);
    writeFrameHeader(this.buf, this.pos, payload.length, type, flags, id);
    this.buf.set(payload, this.pos + 9);
    this.pos += 9 + payload.length;
  }
}

async function serve(conn: Deno.TcpConn) {
  conn.setNoDelay(true);
  const dec = new HpackDecoder();
  const out = new Out();
  out.frame(
    FrameType.SETTINGS,
    0,
    0,
    settingsFrame([[3, 1000], [4, 1 << 20]]).subarray(9),
  );
  let inBuf = new Uint8Array(1 << 16);
  let have = 0;
  let preface = false;
  let recvData = 0;
  let writing: Promise<unknown> | undefined;
  const flush = async () => {
    while (out.pos > 0) {
      const chunk = out.buf.slice(0, out.pos);
      out.pos = 0;
      let off = 0;
      while (off < chunk.length) off += await conn.write(chunk.subarray(off));
    }
    writing = undefined;
  };
  try {
    while (true) {
      if (have === inBuf.length) {
        const g = new Uint8Array(inBuf.length * 2);
        g.set(inBuf);
        inBuf = g;
      }
      const n = await conn.read(inBuf.subarray(have));
      if (n === null) break;
      have += n;
      let p = 0;
      if (!preface) {
        if (have < 24) continue;
        p = 24;
        preface = true;
      }
      while (have - p >= 9) {
        const len = (inBuf[p] << 16) | (inBuf[p + 1] << 8) | inBuf[p + 2];
        if (have - p < 9 + len) break;
        const type = inBuf[p + 3], flags = inBuf[p + 4];
        const id =
          ((inBuf[p + 5] << 24) | (inBuf[p + 6] << 16) | (inBuf[p + 7] << 8) |
            inBuf[p + 8]) & 0x7fffffff;
        const pl = inBuf.subarray(p + 9, p + 9 + len);
        p += 9 + len;
        if (type === FrameType.SETTINGS) {
          if (!(flags & Flag.ACK)) {
            out.frame(FrameType.SETTINGS, Flag.ACK, 0, new Uint8Array(0));
          }
        } else if (type === FrameType.HEADERS) {
          dec.decode(pl);
        } else if (type === FrameType.DATA) {
          recvData += len;
          if (flags & Flag.END_STREAM) {
            out.frame(FrameType.HEADERS, Flag.END_HEADERS, id, RESP_HEADERS);
            out.frame(
              FrameType.DATA,
              0,
              id,
              Uint8Array.of(0, 0, 0, 0, 3, 0x0a, 1, 0x78),
            );
            out.frame(
              FrameType.HEADERS,
              Flag.END_HEADERS | Flag.END_STREAM,
              id,
              TRAILERS,
            );
          }
        } else if (type === FrameType.PING && !(flags & Flag.ACK)) {
          out.frame(FrameType.PING, Flag.ACK, 0, pl.slice());
        }
      }
      if (recvData > 32768) {
        const u = new Uint8Array(4);
        writeUint32(u, 0, recvData);
        out.frame(FrameType.WINDOW_UPDATE, 0, 0, u);
        recvData = 0;
      }
      inBuf.copyWithin(0, p, have);
      have -= p;
      if (out.pos > 0 && !writing) writing = flush();
    }
  } catch (e) {
    if (
      !(e instanceof Deno.errors.BadResource ||
        e instanceof Deno.errors.ConnectionReset)
    ) console.error(e);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
for await (const c of listener) serve(c);
