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
 * because they go through the same stream.
 *
 * This is the only module that touches grpc-js call internals
 * (`call.call`, a BaseServerInterceptingCall with `stream`). When they are
 * not as expected, `messageWriter()` returns a writer on plain `call.write()`.
 */
import type { EventEmitter } from "node:events";
import { payloadOf, PREFIX_BYTES } from "./framing.ts";

/** A sink for framed messages with the stream's backpressure. */
export interface MessageWriter {
  /** True when writes bypass grpc-js (the fast path). */
  readonly direct: boolean;
  /** Writes one framed message; false means wait for the drain listener. */
  write(framed: Uint8Array): boolean;
  /** Listens for 'drain'; returns the function that stops listening. */
  onDrain(listener: () => void): () => void;
}

/** What the fallback needs from a grpc-js writable call. */
export interface WritableCall extends EventEmitter {
  write(message: Uint8Array): boolean;
}

/** The grpc-js internals the direct path relies on. */
interface BaseCall {
  stream: Http2StreamLike;
  cancelled: boolean;
  maxSendMessageSize: number;
  maybeSendMetadata(): void;
}

interface Http2StreamLike extends EventEmitter {
  write(chunk: Uint8Array): boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

/** The direct writer for a call, or one on `call.write()` as fallback. */
export function messageWriter(call: WritableCall): MessageWriter {
  const base = baseCallOf(call);
  if (!base) return fallbackWriter(call);
  const stream = base.stream;
  return {
    direct: true,
    write(framed) {
      const limit = base.maxSendMessageSize;
      if (limit !== -1 && framed.byteLength - PREFIX_BYTES > limit) {
        // grpc-js's path ends the call with RESOURCE_EXHAUSTED.
        return call.write(payloadOf(framed));
      }
      // Like grpc-js: writes to a cancelled or ended call are dropped.
      if (base.cancelled || stream.destroyed || stream.writableEnded) {
        return true;
      }
      base.maybeSendMetadata();
      return stream.write(framed);
    },
    onDrain(listener) {
      stream.on("drain", listener);
      return () => stream.off("drain", listener);
    },
  };
}

function fallbackWriter(call: WritableCall): MessageWriter {
  return {
    direct: false,
    write: (framed) => call.write(payloadOf(framed)),
    onDrain(listener) {
      call.on("drain", listener);
      return () => call.off("drain", listener);
    },
  };
}

/** Feature check: the grpc-js 1.14 call layout, or undefined. */
function baseCallOf(call: WritableCall): BaseCall | undefined {
  const base = (call as unknown as { call?: Partial<BaseCall> }).call;
  const stream = base?.stream;
  if (
    !base || !stream || typeof stream.write !== "function" ||
    typeof stream.on !== "function" ||
    typeof base.maybeSendMetadata !== "function" ||
    typeof base.cancelled !== "boolean" ||
    typeof base.maxSendMessageSize !== "number"
  ) {
    return undefined;
  }
  return base as BaseCall;
}
