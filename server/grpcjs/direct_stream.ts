/**
 * A direct path for server-streaming calls (SubscribeMessages): read the one
 * request off the HTTP/2 stream, hand the handler a small call object with
 * the part of grpc-js's `ServerWritableStream` our handlers use, and end the
 * stream with grpc-js's headers, trailers and statuses.
 *
 * Why: a subscriber is mostly idle, and an idle call on grpc-js's own path
 * holds its interceptor call, a Writable with its state, a stream decoder
 * with its buffers, three Metadata objects, a metrics recorder and a dozen
 * listeners and closures: about 3 KB of heap for as long as the subscriber
 * stays. A {@linkcode DirectServerCall} is one object and three shared
 * listeners (docs/perf-log.md, "Idle subscribers").
 *
 * Semantics kept from grpc-js (1.14.7, server.ts `handleServerStreaming`
 * and server-interceptors.ts): the handler runs once the request has ended
 * with exactly one message (one_request.ts); response headers go with the
 * first message; an 'error' event with a status (a ServiceError) ends the
 * call with it, `end()` with OK; trailers follow the data already written;
 * a status before any message is a trailers-only response; a deadline ends
 * the call with DEADLINE_EXCEEDED; a message over the send limit ends it
 * with RESOURCE_EXHAUSTED; a handler that throws gets UNKNOWN; the call
 * emits 'cancelled' (and `cancelled` turns true) when the client resets the
 * stream, at its deadline and after its status, 'finish' after an OK end.
 * Compressed requests and every other path stay with grpc-js, as with the
 * direct unary path.
 *
 * @module
 */
import type { Metadata, Server } from "@grpc/grpc-js";
import { EventEmitter } from "node:events";
import type http2 from "node:http2";
import process from "node:process";
import { Code, encodeGrpcMessage } from "../../protocol/mod.ts";
import { frameMessage } from "../grpc/framing.ts";
import { peerOf } from "../grpc/caller.ts";
import {
  readOneRequest,
  type RequestWording,
  trailersOnly,
} from "./one_request.ts";
import { divertPlainCalls } from "./stream_listeners.ts";
import { type CallCounter, RESPONSE_HEADERS } from "./direct_unary.ts";

/** A server-streaming method on the direct path. */
export interface DirectStreamMethod {
  /** The request's decoder (the service definition's requestDeserialize). */
  decode(bytes: Uint8Array): unknown;
  /** The same handler grpc-js would run, given a DirectServerCall. */
  handler(call: DirectServerCall): void;
}

/** Options of {@linkcode enableDirectStreams}. */
export interface DirectStreamOptions {
  /** Largest request message accepted (grpc-js's receive limit). */
  maxMessageBytes: number;
  /** Largest response message sent (grpc-js's send limit; -1: none). */
  maxSendMessageBytes: number;
  /**
   * Counts a call refused before its handler runs (no request, two, one
   * that cannot be decoded); the handler counts the others itself.
   */
  calls?: CallCounter;
}

/** grpc-js's headers of a trailers-only response, before the status. */
const TRAILERS_ONLY = Object.freeze({
  ":status": 200,
  "content-type": "application/grpc+proto",
});
const WAIT_FOR_TRAILERS = Object.freeze({ waitForTrailers: true });

/**
 * Serves `methods` (keyed by path) directly on every http2 server grpc-js
 * has now. Call after the server listens. Returns the number of servers
 * patched; 0 means grpc-js's layout was not as expected and it keeps
 * serving every call itself.
 */
export function enableDirectStreams(
  server: Server,
  methods: ReadonlyMap<string, DirectStreamMethod>,
  options: DirectStreamOptions,
): number {
  // grpc-js's words name the method: built once per path, not per call.
  const wordings = new Map<string, RequestWording>();
  for (const path of methods.keys()) {
    wordings.set(path, {
      none: `Received no request message for server streaming method ${path}`,
      second:
        `Received a second request message for server streaming method ${path}`,
    });
  }
  return divertPlainCalls(
    server,
    methods,
    (stream, headers, path, method) =>
      serve(stream, headers, method, wordings.get(path)!, path, options),
  );
}

function serve(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  method: DirectStreamMethod,
  wording: RequestWording,
  path: string,
  options: DirectStreamOptions,
): void {
  const refuse = (code: number, message: string) => {
    if (trailersOnly(stream, TRAILERS_ONLY, code, message)) {
      options.calls?.start(path);
      options.calls?.end(path, code, 0);
    }
  };
  readOneRequest(stream, headers, options.maxMessageBytes, wording, {
    fail: refuse,
    done(bytes, deadline) {
      let request: unknown;
      try {
        request = method.decode(bytes);
      } catch {
        return refuse(Code.INTERNAL, DECODE_ERROR);
      }
      const call = new DirectServerCall(
        stream,
        path,
        request,
        headers.authorization,
        deadline,
        options.maxSendMessageBytes,
      );
      try {
        method.handler(call);
      } catch {
        // grpc-js's answer to a handler that throws (details hidden).
        call.sendStatus(Code.UNKNOWN, "Unknown error");
      }
    },
  });
}

const DECODE_ERROR = "Error deserializing request";
/** Where a stream keeps its call, for the shared 'close' listener. */
const CALL = Symbol("directServerCall");

/**
 * One server-streaming call on the direct path; see the module doc. The
 * writable side for pre-framed messages is raw_stream.ts's writer, which
 * takes this call as it takes grpc-js's internals (`stream`, `cancelled`,
 * `maxSendMessageSize`, `maybeSendMetadata()`).
 */
export class DirectServerCall<Req = unknown> extends EventEmitter {
  /** True once the client reset the stream, the deadline passed, or the status went out. */
  cancelled = false;
  readonly stream: http2.ServerHttp2Stream;
  readonly request: Req;
  /** The request's `authorization` header (a list when repeated). */
  readonly authorization: string | string[] | undefined;
  readonly maxSendMessageSize: number;
  readonly #path: string;
  readonly #deadline: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #headersSent = false;
  #statusSent = false;
  #notified = false;

  constructor(
    stream: http2.ServerHttp2Stream,
    path: string,
    request: unknown,
    authorization: string | string[] | undefined,
    deadline: number,
    maxSendMessageSize: number,
  ) {
    super();
    this.stream = stream;
    this.#path = path;
    this.request = request as Req;
    this.authorization = authorization;
    this.#deadline = deadline;
    this.maxSendMessageSize = maxSendMessageSize;
    // A status given as 'error' (grpc-js's ServerWritableStream does so).
    this.on("error", DirectServerCall.#onError);
    (stream as { [CALL]?: DirectServerCall })[CALL] = this;
    // on(), not once(): 'close' comes once, and once() wraps per stream.
    stream.on("close", DirectServerCall.#onClose);
    if (deadline !== Infinity) {
      this.#timer = setTimeout(
        DirectServerCall.#expire,
        Math.max(0, deadline - Date.now()),
        this,
      );
    }
  }

  static #onError(this: DirectServerCall, err: unknown): void {
    const e = (err ?? {}) as {
      code?: unknown;
      details?: unknown;
      message?: unknown;
      metadata?: Metadata | null;
    };
    let code: number = Code.UNKNOWN;
    let details = typeof e.message === "string" ? e.message : "Unknown Error";
    if (typeof e.code === "number" && Number.isInteger(e.code)) {
      code = e.code;
      if (typeof e.details === "string") details = e.details;
    }
    this.sendStatus(code, details, e.metadata);
  }

  /** The stream closed: reset by the client, or ended by our status. */
  static #onClose(this: { [CALL]?: DirectServerCall }): void {
    const call = this[CALL];
    if (call !== undefined) call.#notifyCancel();
  }

  static #expire(call: DirectServerCall): void {
    call.#timer = undefined;
    call.sendStatus(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
  }

  /** `{remoteAddress}:{remotePort}` of the client, as grpc-js says it. */
  getPeer(): string {
    return peerOf(this.stream.session);
  }

  /** The deadline in ms since the epoch; Infinity when none was sent. */
  getDeadline(): number {
    return this.#deadline;
  }

  getPath(): string {
    return this.#path;
  }

  /** Sends the response headers unless they went out already. */
  maybeSendMetadata(): void {
    if (this.#headersSent || this.#statusSent || this.#gone()) return;
    this.#headersSent = true;
    this.stream.respond(RESPONSE_HEADERS, WAIT_FOR_TRAILERS);
  }

  /**
   * Writes one response message (a payload; raw_stream.ts writes framed
   * ones to the stream itself). Over the send limit the call ends with
   * RESOURCE_EXHAUSTED, as with grpc-js.
   */
  write(message: Uint8Array): boolean {
    if (this.#statusSent || this.#gone()) return true;
    const max = this.maxSendMessageSize;
    if (max !== -1 && message.byteLength > max) {
      this.sendStatus(
        Code.RESOURCE_EXHAUSTED,
        `Sent message larger than max (${message.byteLength + 5} vs. ${max})`,
      );
      return true;
    }
    this.maybeSendMetadata();
    return this.stream.write(frameMessage(message));
  }

  /** Ends the call with OK, after what was written. */
  end(): this {
    if (this.#statusSent || this.#gone()) return this;
    // 'finish' before the 'cancelled' that follows every status, as with
    // grpc-js's Writable (call counting takes the first of the two).
    process.nextTick(() => this.emit("finish"));
    this.sendStatus(Code.OK, "OK");
    return this;
  }

  /**
   * Ends the call with `code`: trailers after the data written, or a
   * trailers-only response. Returns false when the call had ended already.
   */
  sendStatus(
    code: number,
    details: string,
    metadata?: Metadata | null,
  ): boolean {
    if (this.#statusSent || this.#gone()) return false;
    this.#statusSent = true;
    if (!this.#headersSent) {
      trailersOnly(
        this.stream,
        TRAILERS_ONLY,
        code,
        details,
        metadata?.toHttp2Headers(),
      );
      this.#notifyCancel();
      return true;
    }
    const trailers = {
      "grpc-status": String(code),
      "grpc-message": encodeGrpcMessage(details),
      ...metadata?.toHttp2Headers(),
    };
    const stream = this.stream;
    stream.once("wantTrailers", () => {
      stream.sendTrailers(trailers);
      this.#notifyCancel();
    });
    stream.end();
    return true;
  }

  /** Like grpc-js's checkCancelled(): a destroyed stream cancels the call. */
  #gone(): boolean {
    if (!this.cancelled && (this.stream.destroyed || this.stream.closed)) {
      this.#notifyCancel();
    }
    return this.cancelled;
  }

  #notifyCancel(): void {
    if (this.#notified) return;
    this.#notified = true;
    this.cancelled = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    (this.stream as { [CALL]?: DirectServerCall })[CALL] = undefined;
    process.nextTick(() => this.emit("cancelled", "cancelled"));
  }
}
