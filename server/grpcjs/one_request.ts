/**
 * Reads the one request message of a call straight off its HTTP/2 stream,
 * for the direct paths (direct_unary.ts, direct_stream.ts), with grpc-js's
 * semantics: exactly one message (none or two → UNIMPLEMENTED with
 * grpc-js's wording), the receive size limit (RESOURCE_EXHAUSTED), a
 * compressed flag without an encoding (INTERNAL), a malformed `grpc-timeout`
 * (INTERNAL), a deadline that passed before the request was complete
 * (DEADLINE_EXCEEDED), a client that reset the stream (nothing at all).
 *
 * A message in one chunk (the common case) is used as it came; a message in
 * pieces is copied into one buffer that doubles up to its declared size, so
 * a client sending tiny frames costs bytes, not an object per frame, and a
 * prefix without its body costs what was sent.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type http2 from "node:http2";
import {
  Code,
  encodeGrpcMessage,
  parseGrpcTimeout,
  readEnvelopeLength,
} from "../../protocol/mod.ts";
import { PREFIX_BYTES } from "../grpc/framing.ts";

/** grpc-js's words for a call with no or two request messages. */
export interface RequestWording {
  none: string;
  second: string;
}

/** What {@linkcode readOneRequest} calls once, at most. */
export interface RequestReader {
  /** The request could not be taken: answer with this status. */
  fail(code: number, message: string): void;
  /** The whole request, with the call's deadline (ms epoch, or Infinity). */
  done(request: Uint8Array, deadline: number): void;
}

/**
 * Reads `stream`'s one request message; calls `reader.done` with its
 * payload once the request has ended, or `reader.fail` with grpc-js's
 * status, or nothing when the client reset the stream first.
 */
export function readOneRequest(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  maxMessageBytes: number,
  wording: RequestWording,
  reader: RequestReader,
): void {
  const rawTimeout = headers["grpc-timeout"] as string | undefined;
  const timeoutMs = parseGrpcTimeout(rawTimeout);
  const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
  let buf: Buffer | undefined;
  let whole = false;
  let received = 0;
  let declared = -1;
  let finished = false;
  const fail = (code: number, message: string) => {
    finished = true;
    buf = undefined;
    reader.fail(code, message);
  };

  // grpc-js does the same: 'close' follows any error and ends the call.
  stream.on("error", ignore);
  if (rawTimeout !== undefined && timeoutMs === undefined) {
    // grpc-js's answer to a malformed deadline.
    fail(Code.INTERNAL, `Invalid grpc-timeout value "${rawTimeout}"`);
    stream.resume();
    return;
  }
  const onData = (chunk: Buffer) => {
    if (finished) return;
    if (declared < 0) {
      // The prefix may come in pieces (rare): join them until it is whole.
      buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
      received = buf.byteLength;
      if (received < PREFIX_BYTES) return;
      declared = readEnvelopeLength(buf, 0);
      if (declared > maxMessageBytes) {
        return fail(
          Code.RESOURCE_EXHAUSTED,
          `Received message larger than max (${declared} vs. ${maxMessageBytes})`,
        );
      }
      if (received > PREFIX_BYTES + declared) {
        fail(Code.UNIMPLEMENTED, wording.second);
      }
      return;
    }
    if (received + chunk.byteLength > PREFIX_BYTES + declared) {
      return fail(Code.UNIMPLEMENTED, wording.second);
    }
    const need = received + chunk.byteLength;
    if (!whole || need > buf!.byteLength) {
      const grown = Buffer.allocUnsafe(
        Math.min(
          PREFIX_BYTES + declared,
          Math.max(need, 2 * received, 64 * 1024),
        ),
      );
      grown.set(buf!.subarray(0, received));
      buf = grown;
      whole = true;
    }
    buf!.set(chunk, received);
    received += chunk.byteLength;
  };
  stream.on("data", onData);
  stream.once("end", () => {
    // Nothing comes after the end: a long call (a subscriber) should not
    // keep the reader's state.
    stream.off("data", onData);
    if (finished) return;
    finished = true;
    if (buf === undefined || received === 0) {
      return fail(Code.UNIMPLEMENTED, wording.none);
    }
    if (declared < 0 || received !== PREFIX_BYTES + declared) {
      return fail(Code.INTERNAL, "Incomplete message");
    }
    const request = buf;
    buf = undefined;
    if (request[0] !== 0) {
      return fail(
        Code.INTERNAL,
        request[0] === 1
          ? 'Received compressed message but "grpc-encoding" header was identity'
          : `Received message with invalid flag ${request[0]}`,
      );
    }
    if (Date.now() >= deadline) {
      return fail(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
    }
    // Deno's node:http2 emits 'end' for a stream the client reset: a
    // complete message without END_STREAM, then RST_STREAM, must not run.
    if (stream.destroyed || stream.closed) return;
    reader.done(request.subarray(PREFIX_BYTES), deadline);
  });
}

function ignore(): void {}

/** gRPC content type and no compression: the calls the direct paths take. */
export function isPlainGrpc(headers: http2.IncomingHttpHeaders): boolean {
  const type = headers["content-type"];
  const encoding = headers["grpc-encoding"];
  return typeof type === "string" && type.startsWith("application/grpc") &&
    (encoding === undefined || encoding === "identity");
}

const END_STREAM = Object.freeze({ endStream: true });

/**
 * A status with no response message: `headers`, the status and `extra` in
 * one HEADERS frame that ends the stream. Sends nothing and returns false
 * when the stream is closed or was answered already.
 */
export function trailersOnly(
  stream: http2.ServerHttp2Stream,
  headers: http2.OutgoingHttpHeaders,
  code: number,
  message: string,
  extra?: http2.OutgoingHttpHeaders,
): boolean {
  if (stream.destroyed || stream.closed || stream.headersSent) return false;
  stream.respond({
    ...headers,
    "grpc-status": String(code),
    "grpc-message": encodeGrpcMessage(message),
    ...extra,
  }, END_STREAM);
  return true;
}
