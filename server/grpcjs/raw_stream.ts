/**
 * Writes pre-framed gRPC messages straight to a call's HTTP/2 stream.
 *
 * `call.write()` in grpc-js goes through an object-mode Writable, a
 * per-message `serializeMessage` (allocate, prefix, copy) and a write
 * callback per message before it reaches the HTTP/2 stream. For a broadcast
 * framed once (see framing.ts) all of that is per-subscriber overhead, so the
 * direct writer hands the shared framed buffer to the HTTP/2 stream itself,
 * after grpc-js has sent the response headers. Backpressure is the HTTP/2
 * stream's own: `write()` returns false until its 'drain'. grpc-js still ends
 * the call (`call.end()` / `emit("error")`): its trailers follow our data
 * because they go through the same stream, once `flush()` has run.
 *
 * Messages written during one event-loop turn are joined into one stream
 * write at the turn's end (turn_end.ts): under fan-out a subscriber gets
 * several broadcasts per turn, and each HTTP/2 stream write costs a
 * `setImmediate` and a native write in Deno's node:http2. `write()` answers
 * from the stream's buffered bytes plus the pending ones; when it said
 * "full" but the flush found room, the writer fires 'drain' itself, so a
 * paused subscriber always resumes.
 *
 * The call's internals (`call.call`, a BaseServerInterceptingCall with
 * `stream`) come from internals.ts; when grpc-js failed its start-up check,
 * `messageWriter()` returns a writer on plain `call.write()`.
 */
import { Buffer } from "node:buffer";
import type { EventEmitter } from "node:events";
import process from "node:process";
import { payloadOf, PREFIX_BYTES } from "../grpc/framing.ts";
import { beforeTurnEnds } from "../../http2/turn_end.ts";
import { ErrorCode } from "../../protocol/http2/frames.ts";
import { type BaseCallInternals, baseCallOf } from "./internals.ts";

/** A sink for framed messages with the stream's backpressure. */
export interface MessageWriter {
  /** True when writes bypass grpc-js (the fast path). */
  readonly direct: boolean;
  /** Writes one framed message; false means wait for the drain listener. */
  write(framed: Uint8Array): boolean;
  /** Listens for 'drain'; returns the function that stops listening. */
  onDrain(listener: () => void): () => void;
  /**
   * Hands this turn's pending messages to the stream now. Call before
   * ending the call, so that the status cannot overtake them.
   */
  flush(): void;
  /**
   * Resets the HTTP/2 stream (RST_STREAM CANCEL) if it is still open: for a
   * client that stopped reading, whose final status flow control holds back.
   * Returns false when that is not possible (fallback path, or already gone).
   */
  reset(): boolean;
}

/** What the fallback needs from a grpc-js writable call. */
export interface WritableCall extends EventEmitter {
  write(message: Uint8Array): boolean;
}

type BaseCall = BaseCallInternals<Http2StreamLike>;

interface Http2StreamLike extends EventEmitter {
  write(chunk: Uint8Array): boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  readonly writableLength: number;
  readonly writableHighWaterMark: number;
  close?(code?: number): void;
}

/** The direct writer for a call, or one on `call.write()` as fallback. */
export function messageWriter(call: WritableCall): MessageWriter {
  const base = directCallOf(call);
  if (!base) return fallbackWriter(call);
  const stream = base.stream;
  const gone = () => base.cancelled || stream.destroyed || stream.writableEnded;
  const drainListeners = new Set<() => void>();
  const drained = () => {
    owesDrain = false;
    for (const listener of drainListeners) listener();
  };
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  // write() said "full" from its estimate: a drain must follow.
  let owesDrain = false;

  const flush = () => {
    if (pending.length === 0) return;
    const chunks = pending;
    const bytes = pendingBytes;
    pending = [];
    pendingBytes = 0;
    // Like grpc-js: writes to a cancelled or ended call are dropped.
    if (gone()) return;
    const room = stream.write(
      chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, bytes),
    );
    // The stream took it all without asking for a drain of its own.
    if (room && owesDrain) process.nextTick(drained);
  };
  stream.on("drain", drained);

  return {
    direct: true,
    write(framed) {
      const limit = base.maxSendMessageSize;
      if (limit !== -1 && framed.byteLength - PREFIX_BYTES > limit) {
        flush();
        // grpc-js's path ends the call with RESOURCE_EXHAUSTED.
        return call.write(payloadOf(framed));
      }
      if (gone()) return true;
      base.maybeSendMetadata();
      if (pending.length === 0) beforeTurnEnds(flush);
      pending.push(framed);
      pendingBytes += framed.byteLength;
      const full = stream.writableLength + pendingBytes >=
        stream.writableHighWaterMark;
      if (full) owesDrain = true;
      return !full;
    },
    onDrain(listener) {
      drainListeners.add(listener);
      return () => drainListeners.delete(listener);
    },
    flush,
    reset() {
      if (stream.destroyed || typeof stream.close !== "function") return false;
      pending = [];
      pendingBytes = 0;
      stream.close(ErrorCode.CANCEL);
      return true;
    },
  };
}

function fallbackWriter(call: WritableCall): MessageWriter {
  return {
    direct: false,
    flush: () => {},
    reset: () => false,
    write: (framed) => call.write(payloadOf(framed)),
    onDrain(listener) {
      call.on("drain", listener);
      return () => call.off("drain", listener);
    },
  };
}

/** The call's internals when its stream can take direct writes. */
function directCallOf(call: WritableCall): BaseCall | undefined {
  const base = baseCallOf<Http2StreamLike>(call);
  const stream = base?.stream;
  if (
    !base || !stream || typeof stream.write !== "function" ||
    typeof stream.writableLength !== "number" ||
    typeof stream.writableHighWaterMark !== "number"
  ) {
    return undefined;
  }
  return base;
}
