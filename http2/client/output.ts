/**
 * The output side of the client role: request DATA. A message goes out as
 * one DATA frame, copied once into the write buffer, when the windows allow;
 * otherwise it queues on its stream until they do. Writers are told to wait
 * (`write()` returns false) while the socket is behind, and get `onDrain()`.
 *
 * @module
 */
import {
  Flag,
  FRAME_HEADER_BYTES,
  FrameType,
  writeFrameHeader,
} from "../../protocol/http2/frames.ts";
import {
  ENVELOPE_HEADER_BYTES as ENVELOPE_BYTES,
  writeEnvelopeHeader,
} from "../../protocol/envelope.ts";
import { H2Connection } from "../connection.ts";
import type { H2Stream } from "./stream.ts";

const EMPTY = new Uint8Array(0);

/** Request output of a client connection; see the module doc. */
export abstract class H2ClientOutput extends H2Connection<H2Stream> {
  /** Streams whose last write returned false. */
  protected readonly drainWaiters = new Set<H2Stream>();
  /** Above this many unwritten bytes, writes ask the caller to wait. */
  protected abstract readonly writeHighWater: number;

  /** See {@linkcode H2Stream.write}. */
  writeMessage(s: H2Stream, message: Uint8Array): boolean {
    if (s.closed || s.localClosed || s.endPending || this.dead) return true;
    const total = ENVELOPE_BYTES + message.byteLength;
    if (
      s.id !== 0 && s.outBytes === 0 && total <= s.sendWindow &&
      total <= this.sendWindow && total <= this.peerMaxFrame
    ) {
      // The common case: one DATA frame, copied once into the write buffer.
      const w = this.writer;
      const at = w.reserve(FRAME_HEADER_BYTES + total);
      const b = w.buf;
      writeFrameHeader(b, at, total, FrameType.DATA, 0, s.id);
      writeEnvelopeHeader(b, at + FRAME_HEADER_BYTES, 0, message.byteLength);
      b.set(message, at + FRAME_HEADER_BYTES + ENVELOPE_BYTES);
      s.sendWindow -= total;
      this.sendWindow -= total;
    } else {
      const envelope = new Uint8Array(ENVELOPE_BYTES);
      writeEnvelopeHeader(envelope, 0, 0, message.byteLength);
      s.out.push(envelope);
      if (message.byteLength > 0) s.out.push(message);
      s.outBytes += total;
      if (s.id !== 0) this.pump(s);
    }
    if (
      s.outBytes === 0 && this.writer.buffered <= this.writeHighWater
    ) {
      return true;
    }
    s.wantsDrain = true;
    this.drainWaiters.add(s);
    return false;
  }

  /** See {@linkcode H2Stream.end}. */
  end(s: H2Stream): void {
    if (s.closed || s.localClosed || s.endPending || this.dead) return;
    if (s.id === 0 || s.outBytes > 0) {
      s.endPending = true;
      return;
    }
    this.writer.header(0, FrameType.DATA, Flag.END_STREAM, s.id);
    s.localClosed = true;
  }

  protected override onWritable(): void {
    if (this.drainWaiters.size === 0) return;
    if (this.writer.buffered > this.writeHighWater) return;
    for (const s of this.drainWaiters) {
      if (s.outBytes > 0 || s.id === 0) continue;
      this.drainWaiters.delete(s);
      s.wantsDrain = false;
      s.handler.onDrain();
    }
  }

  /** Sends queued bytes as far as the windows allow. */
  protected pump(s: H2Stream): void {
    if (s.outBytes === 0 && !s.endPending) return;
    const w = this.writer;
    while (s.outBytes > 0) {
      const n = Math.min(
        s.outBytes,
        s.sendWindow,
        this.sendWindow,
        this.peerMaxFrame,
      );
      if (n <= 0) break;
      const last = n === s.outBytes && s.endPending;
      w.header(n, FrameType.DATA, last ? Flag.END_STREAM : 0, s.id);
      const at = w.reserve(n);
      const b = w.buf;
      let filled = 0;
      while (filled < n) {
        const part = s.out[s.outHead];
        const take = Math.min(part.byteLength - s.outOffset, n - filled);
        b.set(part.subarray(s.outOffset, s.outOffset + take), at + filled);
        filled += take;
        s.outOffset += take;
        if (s.outOffset === part.byteLength) {
          s.out[s.outHead++] = EMPTY;
          s.outOffset = 0;
        }
      }
      s.outBytes -= n;
      s.sendWindow -= n;
      this.sendWindow -= n;
      if (last) {
        s.endPending = false;
        s.localClosed = true;
      }
    }
    if (s.outBytes > 0) {
      this.blocked.add(s);
      return;
    }
    s.out = [];
    s.outHead = 0;
    this.blocked.delete(s);
    if (s.endPending) {
      w.header(0, FrameType.DATA, Flag.END_STREAM, s.id);
      s.endPending = false;
      s.localClosed = true;
    }
  }
}
