/**
 * Reads the one request message of a call straight off its HTTP/2 stream,
 * for the direct paths (direct_unary.ts, direct_stream.ts), with grpc-js's
 * semantics: exactly one message (none or two → UNIMPLEMENTED with
 * grpc-js's wording), the receive size limit (RESOURCE_EXHAUSTED), a
 * compressed flag without an encoding (INTERNAL), a malformed `grpc-timeout`
 * (INTERNAL), a deadline that passed before the request was complete
 * (DEADLINE_EXCEEDED, sent at the deadline even while the request is still
 * coming in, or never comes), a client that reset the stream (nothing at
 * all).
 *
 * No timer is armed for a request that is whole within the event-loop turn
 * its headers came in (nearly every one): only a request with a deadline
 * that is still unfinished at the end of that turn gets one, so a client
 * that sends a `grpc-timeout` and then stalls its body is answered
 * DEADLINE_EXCEEDED at its deadline, as grpc-js's own path does, instead of
 * holding its stream (and its unfinished bytes) until it ends the body.
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
import { atTurnEnd } from "../../http2/turn_end.ts";
import { MAX_TIMER_MS } from "../../protocol/grpc_headers.ts";
import {
  H2ServerStream,
  type StreamReader,
} from "../../http2/server/stream.ts";

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
  const request = new OneRequest(
    stream,
    maxMessageBytes,
    wording,
    reader,
    deadline,
  );
  if (deadline !== Infinity) watchDeadline(request);
  if (stream instanceof H2ServerStream) {
    // Our own stream takes a reader object: no listeners, no closures per
    // call. It never emits 'error'.
    if (rawTimeout !== undefined && timeoutMs === undefined) {
      request.badTimeout(rawTimeout);
      stream.resume();
      return;
    }
    stream.readWith(request);
    return;
  }
  // grpc-js does the same: 'close' follows any error and ends the call.
  stream.on("error", ignore);
  if (rawTimeout !== undefined && timeoutMs === undefined) {
    request.badTimeout(rawTimeout);
    stream.resume();
    return;
  }
  const onData = (chunk: Buffer) => request.onData(chunk);
  stream.on("data", onData);
  stream.once("end", () => {
    // Nothing comes after the end: a long call (a subscriber) should not
    // keep the reader's state.
    stream.off("data", onData);
    request.onEnd();
  });
}

/**
 * The state of one request being read: one object per call, its methods
 * fed by the stream (H2ServerStream's reader, or two listeners on a
 * `node:http2` stream).
 */
class OneRequest implements StreamReader {
  readonly #stream: http2.ServerHttp2Stream;
  readonly #max: number;
  readonly #wording: RequestWording;
  readonly #reader: RequestReader;
  readonly #deadline: number;
  #buf: Buffer | undefined;
  #whole = false;
  #received = 0;
  #declared = -1;
  #finished = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    stream: http2.ServerHttp2Stream,
    max: number,
    wording: RequestWording,
    reader: RequestReader,
    deadline: number,
  ) {
    this.#stream = stream;
    this.#max = max;
    this.#wording = wording;
    this.#reader = reader;
    this.#deadline = deadline;
  }

  #fail(code: number, message: string): void {
    this.#finished = true;
    this.#buf = undefined;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#reader.fail(code, message);
  }

  /**
   * At the end of the turn the request's headers came in: a request still
   * unfinished gets a timer for its deadline.
   */
  armDeadline(): void {
    if (this.#finished) return;
    const left = this.#deadline - Date.now();
    // Beyond a timer's range (597H or more) a deadline means none.
    if (left > MAX_TIMER_MS) return;
    this.#timer = setTimeout(expire, Math.max(0, left), this);
  }

  /** The deadline passed with the request still unfinished. */
  expire(): void {
    this.#timer = undefined;
    if (this.#finished) return;
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) {
      // The client reset the stream: nothing to answer.
      this.#finished = true;
      this.#buf = undefined;
      return;
    }
    this.#fail(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
  }

  /** grpc-js's answer to a malformed deadline. */
  badTimeout(raw: string): void {
    this.#fail(Code.INTERNAL, `Invalid grpc-timeout value "${raw}"`);
  }

  onData(chunk: Buffer): void {
    if (this.#finished) return;
    if (this.#declared < 0) {
      // The prefix may come in pieces (rare): join them until it is whole.
      const buf = this.#buf === undefined
        ? chunk
        : Buffer.concat([this.#buf, chunk]);
      this.#buf = buf;
      this.#received = buf.byteLength;
      if (this.#received < PREFIX_BYTES) return;
      const declared = readEnvelopeLength(buf, 0);
      this.#declared = declared;
      if (declared > this.#max) {
        return this.#fail(
          Code.RESOURCE_EXHAUSTED,
          `Received message larger than max (${declared} vs. ${this.#max})`,
        );
      }
      if (this.#received > PREFIX_BYTES + declared) {
        this.#fail(Code.UNIMPLEMENTED, this.#wording.second);
      }
      return;
    }
    const received = this.#received;
    const need = received + chunk.byteLength;
    if (need > PREFIX_BYTES + this.#declared) {
      return this.#fail(Code.UNIMPLEMENTED, this.#wording.second);
    }
    let buf = this.#buf!;
    if (!this.#whole || need > buf.byteLength) {
      const grown = Buffer.allocUnsafe(
        Math.min(
          PREFIX_BYTES + this.#declared,
          Math.max(need, 2 * received, 64 * 1024),
        ),
      );
      grown.set(buf.subarray(0, received));
      buf = this.#buf = grown;
      this.#whole = true;
    }
    buf.set(chunk, received);
    this.#received = need;
  }

  onEnd(): void {
    const stream = this.#stream;
    // Nothing comes after the end: a long call (a subscriber) should not
    // keep the reader's state.
    if (stream instanceof H2ServerStream) stream.readWith(undefined);
    if (this.#finished) return;
    this.#finished = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const wording = this.#wording;
    const request = this.#buf;
    const received = this.#received;
    this.#buf = undefined;
    if (request === undefined || received === 0) {
      return this.#fail(Code.UNIMPLEMENTED, wording.none);
    }
    if (this.#declared < 0 || received !== PREFIX_BYTES + this.#declared) {
      return this.#fail(Code.INTERNAL, "Incomplete message");
    }
    if (request[0] !== 0) {
      return this.#fail(
        Code.INTERNAL,
        request[0] === 1
          ? 'Received compressed message but "grpc-encoding" header was identity'
          : `Received message with invalid flag ${request[0]}`,
      );
    }
    if (Date.now() >= this.#deadline) {
      return this.#fail(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
    }
    // Deno's node:http2 emits 'end' for a stream the client reset: a
    // complete message without END_STREAM, then RST_STREAM, must not run.
    if (stream.destroyed || stream.closed) return;
    this.#reader.done(request.subarray(PREFIX_BYTES), this.#deadline);
  }
}

function ignore(): void {}

function expire(request: OneRequest): void {
  request.expire();
}

/** Requests with a deadline whose headers came in this turn. */
let fresh: OneRequest[] = [];

/** Arms `request`'s deadline at the end of this turn if it is unfinished. */
function watchDeadline(request: OneRequest): void {
  if (fresh.push(request) === 1) atTurnEnd(armDeadlines);
}

function armDeadlines(): void {
  const now = fresh;
  fresh = [];
  for (const request of now) request.armDeadline();
}

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
