/**
 * Reads a streaming call's request messages straight off its HTTP/2 stream.
 *
 * grpc-js delivers each request message through its decoder, a read queue,
 * a promise per message (decompression, even for identity), the handler's
 * deserializer and an object-mode Readable, pausing and resuming the HTTP/2
 * stream around every message. Under UploadMessages that machinery was most
 * of the per-message cost (docs/perf-log.md). The direct reader takes the
 * stream's 'data' events itself, splits the gRPC frames with the shared
 * EnvelopeParser and hands each payload to the handler in the same turn.
 *
 * grpc-js keeps the call: metadata, deadline, cancellation ('cancelled'),
 * the response and the status. Only its 'data' listener on the stream is
 * replaced, before it has seen a byte (grpc-js pauses the stream until the
 * handler reads, and the handler asks for the reader first thing).
 *
 * With a compressed request (grpc-encoding other than identity) or a
 * grpc-js whose layout failed the start-up check (internals.ts), the reader
 * falls back to the call's own 'data' events with the definition's
 * deserializer.
 */
import type { EventEmitter } from "node:events";
import { EnvelopeParser, ProtocolError } from "../../protocol/mod.ts";
import { ChatError } from "../rooms/errors.ts";
import { type BaseCallInternals, baseCallOf } from "./internals.ts";

/**
 * Flow control of a reader: pausing stops the HTTP/2 stream's reads. On the
 * direct path it takes effect after the chunk being parsed: the messages
 * already in that chunk (at most one HTTP/2 window's worth) are still
 * delivered.
 */
export interface MessageReader {
  /** True when messages bypass grpc-js (the fast path). */
  readonly direct: boolean;
  pause(): void;
  resume(): void;
  /** Stops delivering messages and end; idempotent. */
  stop(): void;
}

/** What a reader reports. */
export interface ReaderHandlers<T> {
  /** One request message, decoded by `decode`. */
  message(value: T, bytes: Uint8Array): void;
  /** The client half-closed after its last message. */
  end(): void;
  /** The request bytes were bad; the call should end with this error. */
  error(err: ChatError): void;
}

interface Http2StreamLike extends EventEmitter {
  pause(): void;
  resume(): void;
}

type BaseCall = BaseCallInternals<Http2StreamLike>;

/**
 * Starts reading `call`'s request messages. `decode` turns a payload into
 * the handler's value (a throw ends the call with INTERNAL, as grpc-js does
 * for a request it cannot deserialize). `fallback` is the call's own
 * message event, used when the direct path is not possible.
 */
export function readMessages<T>(
  call: EventEmitter,
  decode: (bytes: Uint8Array) => T,
  handlers: ReaderHandlers<T>,
  fallback: (value: unknown) => { value: T; bytes: Uint8Array },
): MessageReader {
  const base = directCallOf(call);
  if (!base) return fallbackReader(call, handlers, fallback);
  const stream = base.stream;
  const grpcJs = stream.listeners("data");
  for (const listener of grpcJs) {
    stream.removeListener("data", listener as (...args: unknown[]) => void);
  }
  const parser = new EnvelopeParser({
    maxMessageBytes: base.maxReceiveMessageSize === -1
      ? Number.MAX_SAFE_INTEGER
      : base.maxReceiveMessageSize,
    allowedFlags: 0,
  });
  let stopped = false;

  const fail = (err: ChatError) => {
    stop();
    handlers.error(err);
  };
  const onData = (chunk: Uint8Array) => {
    if (stopped) return;
    let envelopes;
    try {
      envelopes = parser.push(chunk);
    } catch (err) {
      return fail(envelopeError(err));
    }
    for (const { data } of envelopes) {
      let value: T;
      try {
        value = decode(data);
      } catch (err) {
        return fail(
          new ChatError(
            "internal",
            `Error deserializing request: ${(err as Error).message}`,
          ),
        );
      }
      handlers.message(value, data);
      if (stopped) return;
    }
  };
  const onEnd = () => {
    if (stopped) return;
    if (parser.pending) {
      return fail(new ChatError("internal", "Incomplete message"));
    }
    stop();
    handlers.end();
  };
  const stop = () => {
    if (stopped) return;
    stopped = true;
    stream.removeListener("data", onData);
    stream.removeListener("end", onEnd);
    // Keep the stream flowing so grpc-js can still see it end and close.
    stream.resume();
  };
  stream.on("data", onData);
  stream.on("end", onEnd);
  stream.resume();
  return {
    direct: true,
    pause: () => {
      if (!stopped) stream.pause();
    },
    resume: () => {
      if (!stopped) stream.resume();
    },
    stop,
  };
}

function envelopeError(err: unknown): ChatError {
  if (err instanceof ProtocolError && err.kind === "oversize") {
    return new ChatError(
      "resource_exhausted",
      `Received message larger than max: ${err.message}`,
    );
  }
  if (err instanceof ProtocolError && err.kind === "flags") {
    // Flag 1 is "compressed", which an identity request must not set.
    return new ChatError("internal", `Bad request frame: ${err.message}`);
  }
  return new ChatError("internal", `Bad request frame: ${String(err)}`);
}

function fallbackReader<T>(
  call: EventEmitter,
  handlers: ReaderHandlers<T>,
  fallback: (value: unknown) => { value: T; bytes: Uint8Array },
): MessageReader {
  let stopped = false;
  const onData = (raw: unknown) => {
    const { value, bytes } = fallback(raw);
    handlers.message(value, bytes);
  };
  const onEnd = () => {
    stop();
    handlers.end();
  };
  const stop = () => {
    if (stopped) return;
    stopped = true;
    call.off("data", onData);
    call.off("end", onEnd);
  };
  call.on("data", onData);
  call.on("end", onEnd);
  const readable = call as EventEmitter & {
    pause?: () => void;
    resume?: () => void;
  };
  return {
    direct: false,
    pause: () => readable.pause?.(),
    resume: () => readable.resume?.(),
    stop,
  };
}

/**
 * The call's grpc-js internals when the direct path can take it: identity
 * encoding, nothing read yet, grpc-js's one 'data' listener on the stream.
 */
function directCallOf(call: EventEmitter): BaseCall | undefined {
  const base = baseCallOf<Http2StreamLike>(call);
  const stream = base?.stream;
  if (
    !base || !stream || typeof stream.pause !== "function" ||
    typeof stream.resume !== "function" ||
    base.incomingEncoding !== "identity" || base.readQueue.length !== 0 ||
    stream.listeners("data").length !== 1
  ) {
    return undefined;
  }
  return base;
}
