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
import { DirectServerCall } from "./direct_stream.ts";

/** A sink for framed messages with the stream's backpressure. */
export interface MessageWriter {
  /** True when writes bypass grpc-js (the fast path). */
  readonly direct: boolean;
  /** Writes one framed message; false means wait for the drain listener. */
  write(framed: Uint8Array): boolean;
  /**
   * Writes one framed message of `bytes` bytes that `encode` writes in
   * place, at `out[at..]`, before this returns (the direct path: into the
   * turn's pending output, with no buffer of its own); as `write()`.
   */
  writeEncoded(bytes: number, encode: Encode): boolean;
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

/** Writes a framed message at `out[at..]` (see `writeEncoded`). */
export type Encode = (out: Uint8Array, at: number) => void;

/** Output encoded in place goes into buffers of this size and up. */
const MIN_TAIL = 256;
const MAX_TAIL = 16 * 1024;

/** What the fallback needs from a grpc-js writable call. */
export interface WritableCall extends EventEmitter {
  write(message: Uint8Array): boolean;
}

/** What the direct writer needs of a call: grpc-js's internals, or a DirectServerCall. */
type BaseCall = Pick<
  BaseCallInternals<Http2StreamLike>,
  "stream" | "cancelled" | "maxSendMessageSize" | "maybeSendMetadata"
>;

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
  // A call of the direct streaming path has what the writer needs itself.
  const base = call instanceof DirectServerCall ? call : directCallOf(call);
  return base ? new DirectWriter(call, base) : fallbackWriter(call);
}

/** Where a stream keeps its direct writer, for the shared 'drain' listener. */
const WRITER = Symbol("messageWriter");

/**
 * The direct path. A class with one closure (`flush`, handed to the turn's
 * end and to cleanups) rather than a closure per method: an idle subscriber
 * keeps its writer as long as it stays (docs/perf-log.md, "Idle
 * subscribers").
 */
class DirectWriter implements MessageWriter {
  readonly direct = true;
  readonly #call: WritableCall;
  readonly #base: BaseCall;
  readonly #stream: Http2StreamLike;
  /** Drain listeners: usually one, a list only from the second. */
  #listeners: (() => void) | (() => void)[] | undefined;
  #pending: Uint8Array | Uint8Array[] | undefined;
  #pendingBytes = 0;
  /** `flush` is queued for this turn's end. */
  #queued = false;
  /**
   * Messages encoded in place (`writeEncoded`): `#tail[#tailFrom,
   * #tailLen)` is pending after `#pending`. Bytes handed to the stream are
   * never written again; a new buffer follows a full one.
   */
  #tail: Uint8Array | undefined;
  #tailFrom = 0;
  #tailLen = 0;
  /** The size of the next such buffer: doubled each time one fills up. */
  #tailSize = MIN_TAIL;
  // write() said "full" from its estimate: a drain must follow.
  #owesDrain = false;

  constructor(call: WritableCall, base: BaseCall) {
    this.#call = call;
    this.#base = base;
    this.#stream = base.stream;
    (this.#stream as { [WRITER]?: DirectWriter })[WRITER] = this;
    this.#stream.on("drain", DirectWriter.#onStreamDrain);
  }

  /** The stream's 'drain' listener, shared; `this` is the stream. */
  static #onStreamDrain(this: { [WRITER]?: DirectWriter }): void {
    const writer = this[WRITER];
    if (writer !== undefined) DirectWriter.#drained(writer);
  }

  static #drained(writer: DirectWriter): void {
    writer.#emitDrain();
  }

  #emitDrain(): void {
    this.#owesDrain = false;
    const listeners = this.#listeners;
    if (typeof listeners === "function") listeners();
    else if (listeners !== undefined) {
      for (const listener of [...listeners]) listener();
    }
  }

  #gone(): boolean {
    const stream = this.#stream;
    return this.#base.cancelled || stream.destroyed || stream.writableEnded;
  }

  readonly flush = (): void => {
    this.#queued = false;
    this.#sealTail();
    const tail = this.#tail;
    // A mostly used buffer is let go (it stays with the stream until sent).
    if (tail !== undefined && 4 * (tail.length - this.#tailLen) < tail.length) {
      this.#tail = undefined;
    }
    const pending = this.#pending;
    if (pending === undefined) return;
    const bytes = this.#pendingBytes;
    this.#pending = undefined;
    this.#pendingBytes = 0;
    // Like grpc-js: writes to a cancelled or ended call are dropped.
    if (this.#gone()) return;
    const room = this.#stream.write(
      pending instanceof Uint8Array ? pending : Buffer.concat(pending, bytes),
    );
    // The stream took it all without asking for a drain of its own.
    if (room && this.#owesDrain) process.nextTick(DirectWriter.#drained, this);
  };

  write(framed: Uint8Array): boolean {
    const limit = this.#base.maxSendMessageSize;
    if (limit !== -1 && framed.byteLength - PREFIX_BYTES > limit) {
      this.flush();
      // grpc-js's path ends the call with RESOURCE_EXHAUSTED.
      return this.#call.write(payloadOf(framed));
    }
    if (this.#gone()) return true;
    this.#base.maybeSendMetadata();
    this.#sealTail();
    this.#add(framed);
    this.#pendingBytes += framed.byteLength;
    return this.#room();
  }

  writeEncoded(bytes: number, encode: Encode): boolean {
    const limit = this.#base.maxSendMessageSize;
    if (limit !== -1 && bytes - PREFIX_BYTES > limit) {
      const framed = Buffer.allocUnsafe(bytes);
      encode(framed, 0);
      return this.write(framed);
    }
    if (this.#gone()) return true;
    this.#base.maybeSendMetadata();
    let tail = this.#tail;
    if (tail === undefined || this.#tailLen + bytes > tail.length) {
      if (tail !== undefined) {
        this.#sealTail();
        this.#tailSize = Math.min(MAX_TAIL, 2 * this.#tailSize);
      }
      tail = this.#tail = new Uint8Array(Math.max(bytes, this.#tailSize));
      this.#tailFrom = this.#tailLen = 0;
    }
    encode(tail, this.#tailLen);
    this.#tailLen += bytes;
    this.#pendingBytes += bytes;
    if (!this.#queued) {
      this.#queued = true;
      beforeTurnEnds(this.flush);
    }
    return this.#room();
  }

  /** Moves what was encoded in place so far to `#pending`, in order. */
  #sealTail(): void {
    if (this.#tailLen === this.#tailFrom) return;
    this.#add(this.#tail!.subarray(this.#tailFrom, this.#tailLen));
    this.#tailFrom = this.#tailLen;
  }

  #add(framed: Uint8Array): void {
    const pending = this.#pending;
    if (pending === undefined) this.#pending = framed;
    else if (pending instanceof Uint8Array) this.#pending = [pending, framed];
    else pending.push(framed);
    if (!this.#queued) {
      this.#queued = true;
      beforeTurnEnds(this.flush);
    }
  }

  /** Whether the stream has room for more (else a drain is owed). */
  #room(): boolean {
    const stream = this.#stream;
    const full = stream.writableLength + this.#pendingBytes >=
      stream.writableHighWaterMark;
    if (full) this.#owesDrain = true;
    return !full;
  }

  onDrain(listener: () => void): () => void {
    const listeners = this.#listeners;
    if (listeners === undefined) this.#listeners = listener;
    else if (typeof listeners === "function") {
      this.#listeners = [listeners, listener];
    } else listeners.push(listener);
    return () => this.#offDrain(listener);
  }

  #offDrain(listener: () => void): void {
    const listeners = this.#listeners;
    if (listeners === listener) this.#listeners = undefined;
    else if (Array.isArray(listeners)) {
      const i = listeners.indexOf(listener);
      if (i >= 0) listeners.splice(i, 1);
    }
  }

  reset(): boolean {
    const stream = this.#stream;
    if (stream.destroyed || typeof stream.close !== "function") return false;
    this.#pending = undefined;
    this.#pendingBytes = 0;
    this.#tailFrom = this.#tailLen;
    stream.close(ErrorCode.CANCEL);
    return true;
  }
}

function fallbackWriter(call: WritableCall): MessageWriter {
  return {
    direct: false,
    flush: () => {},
    reset: () => false,
    write: (framed) => call.write(payloadOf(framed)),
    writeEncoded(bytes, encode) {
      const framed = Buffer.allocUnsafe(bytes);
      encode(framed, 0);
      return call.write(payloadOf(framed));
    },
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
