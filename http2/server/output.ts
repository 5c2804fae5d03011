/**
 * The output side of the server role: response headers, trailers and DATA.
 * A stream's pending chunks go out as DATA frames as far as both windows
 * and the socket allow (`outputLimit` bytes queued); the rest waits in
 * `blocked` until a WINDOW_UPDATE or the socket taking bytes.
 *
 * @module
 */
import { HpackEncoder } from "../../protocol/http2/hpack.ts";
import {
  Flag,
  FRAME_HEADER_BYTES,
  FrameType,
  Setting,
  writeFrameHeader,
} from "../../protocol/http2/frames.ts";
import { H2Connection } from "../connection.ts";
import { encodeResponseHeaders } from "./headers.ts";
import type { H2ServerStream, OutgoingHeaders } from "./stream.ts";

/** Response output of a server connection; see the module doc. */
export abstract class H2ServerOutput extends H2Connection<H2ServerStream> {
  /**
   * Constant responses and trailers index up to this many octets of the
   * client's HPACK table (five gRPC fields take ~280).
   */
  readonly #encoder = new HpackEncoder({ tableSize: 1024 });

  protected override onSetting(key: number, value: number): void {
    if (key === Setting.HEADER_TABLE_SIZE) {
      this.#encoder.setPeerTableSize(value);
    }
  }

  sendHeaders(
    stream: H2ServerStream,
    headers: OutgoingHeaders,
    endStream: boolean,
  ): void {
    if (this.dead) return;
    this.writer.headerBlock(
      stream.id,
      encodeResponseHeaders(this.#encoder, headers),
      this.peerMaxFrame,
      endStream,
    );
  }

  pump(s: H2ServerStream): void {
    if (this.dead) return;
    const w = this.writer;
    const pending = s.pending;
    while (pending.length > 0) {
      const p = pending.peek()!;
      const left = p.data.byteLength - s.pendingOffset;
      if (left > 0) {
        const room = Math.min(s.sendWindow, this.sendWindow);
        if (room <= 0 || w.buffered >= this.opts.outputLimit) {
          this.blocked.add(s);
          return;
        }
        const n = Math.min(left, room, this.peerMaxFrame);
        const at = w.reserve(FRAME_HEADER_BYTES + n);
        const buf = w.buf;
        writeFrameHeader(buf, at, n, FrameType.DATA, 0, s.id);
        buf.set(
          n === p.data.byteLength
            ? p.data
            : p.data.subarray(s.pendingOffset, s.pendingOffset + n),
          at + FRAME_HEADER_BYTES,
        );
        s.pendingOffset += n;
        s.sendWindow -= n;
        this.sendWindow -= n;
        s.writableLength -= n;
        if (n < left) continue;
      }
      pending.shift();
      s.pendingOffset = 0;
      s.sentChunk(p.cb);
    }
    this.blocked.delete(s);
    if (s.writableEnded && !s.localEnded && !s.destroyed) s.allSent();
  }

  sendEnd(stream: H2ServerStream): void {
    if (!this.dead) {
      this.writer.header(0, FrameType.DATA, Flag.END_STREAM, stream.id);
    }
  }

  reset(stream: H2ServerStream, code: number): void {
    if (!this.dead) this.writer.frame32(FrameType.RST_STREAM, stream.id, code);
  }
}
