/**
 * A direct path for plain unary calls: read the request off the HTTP/2
 * stream, run the method, answer with headers, one framed message and
 * trailers. grpc-js keeps the server (listeners, sessions, keepalive,
 * shutdown, every other method); only the per-call machinery of its unary
 * calls is skipped.
 *
 * Why: with Deno's `node:http2`, grpc-js's per-call objects (metadata
 * parsing, a deadline timer, the decoder, the interceptor chain, a promise
 * per message) cost about as much as the HTTP/2 layer itself. A unary call
 * on this path costs about half (docs/perf-log.md, "Direct unary calls").
 *
 * What is left to grpc-js: any request with a `grpc-encoding` other than
 * identity (compression), any content type that is not gRPC (grpc-js's 415),
 * and every path not registered here. It wraps the one 'stream' listener of
 * each of grpc-js's http2 servers (internals.ts); when grpc-js failed its
 * start-up check nothing is patched and grpc-js serves the calls as before.
 *
 * Semantics kept from grpc-js: one request message exactly (none or two →
 * UNIMPLEMENTED with grpc-js's wording), the receive size limit
 * (RESOURCE_EXHAUSTED), compressed flag without an encoding (INTERNAL), a
 * deadline that passed before the request was complete (DEADLINE_EXCEEDED,
 * and the method does not run), a cancelled call (nothing runs, nothing is
 * sent; a method that waited, for a token, asks `gone()` before it acts).
 * The method starts synchronously once the request is complete and may
 * answer later through a callback (SendMessage: once its message is
 * committed, with every other call of the turn in one transaction). No
 * timer is armed for a request that is whole in the turn its headers came
 * in: only one with a `grpc-timeout` still unfinished then gets one
 * (one_request.ts), so a client that never finishes its request is bounded
 * by its own deadline and by max-concurrent-streams, as with grpc-js.
 */
import type { Server } from "@grpc/grpc-js";
import type http2 from "node:http2";
import { Code } from "../../protocol/mod.ts";
import { frameMessage } from "../grpc/framing.ts";
import { RETRY_AFTER_MS, toServiceError } from "../grpc/status.ts";
import { divertPlainCalls } from "./stream_listeners.ts";
import {
  readOneRequest,
  type RequestReader,
  trailersOnly,
} from "./one_request.ts";
import { H2ServerStream } from "../../http2/server/stream.ts";

/**
 * A unary method: request bytes in, response bytes out. It answers by
 * returning them (or a promise of them), or by returning nothing and
 * calling `call.reply` later (SendMessage answers once its message is
 * committed). It gets the call's headers and HTTP/2 session (for
 * authorization and per-connection limits). A method that waits before
 * acting asks `call.gone()` first: true once the client cancelled or the
 * deadline passed, and then it must do nothing (grpc-js's own path checks
 * `call.cancelled`). A ChatError, thrown, rejected or passed to `reply`,
 * becomes the call's status.
 */
export type DirectUnaryMethod = (
  request: Uint8Array,
  headers: http2.IncomingHttpHeaders,
  session: unknown,
  call: DirectUnaryCall,
) => Uint8Array | Promise<Uint8Array> | void;

/** What a {@linkcode DirectUnaryMethod} answers through. */
export interface DirectUnaryCall {
  /** True once the client cancelled or the deadline passed. */
  gone(): boolean;
  /** The answer: an error (becomes the status) or the response bytes. */
  reply(err: unknown, response?: Uint8Array): void;
  /** The response already framed (gRPC prefix first), as frameMessage(). */
  replyFramed(framed: Uint8Array): void;
}

/** Options of {@linkcode enableDirectUnary}. */
export interface DirectUnaryOptions {
  /** Largest request message accepted (grpc-js's receive limit). */
  maxMessageBytes: number;
  /** Called with an unexpected (non-ChatError) failure of a method. */
  onInternal?: (err: unknown) => void;
  /**
   * Counts each call (Prometheus, server/ops/call_stats.ts): `start` when it
   * arrives, `end` with its status code and duration once answered. Both
   * must allocate nothing; a call the client cancels first is not ended.
   */
  calls?: CallCounter;
}

/** What the direct path reports per call; see DirectUnaryOptions.calls. */
export interface CallCounter {
  start(path: string): void;
  end(path: string, code: number, durationMs: number): void;
}

/** grpc-js's response headers, which both direct paths send. */
export const RESPONSE_HEADERS = Object.freeze({
  ":status": 200,
  "content-type": "application/grpc+proto",
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-encoding": "identity",
});
const OK_TRAILERS = Object.freeze({
  "grpc-status": String(Code.OK),
  "grpc-message": "OK",
});

/**
 * Serves `methods` (keyed by path, e.g. `/chat.ChatService/SendMessage`)
 * directly on every http2 server grpc-js has now. Call after the server
 * listens. Returns the number of servers patched; 0 means grpc-js's layout
 * was not as expected and it keeps serving every call itself.
 */
export function enableDirectUnary(
  server: Server,
  methods: ReadonlyMap<string, DirectUnaryMethod>,
  options: DirectUnaryOptions,
): number {
  return divertPlainCalls(
    server,
    methods,
    (stream, headers, path, method) =>
      serve(stream, headers, path, method, options),
  );
}

function serve(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  path: string,
  method: DirectUnaryMethod,
  options: DirectUnaryOptions,
): void {
  readOneRequest(
    stream,
    headers,
    options.maxMessageBytes,
    WORDING,
    new UnaryCall(stream, headers, path, method, options),
  );
}

/**
 * One call on the direct path: the reader of its request, and what the
 * method answers through. One object per call, no closures (a unary call
 * costs a few µs; its garbage is a good part of that).
 */
class UnaryCall implements RequestReader, DirectUnaryCall {
  readonly #stream: http2.ServerHttp2Stream;
  readonly #headers: http2.IncomingHttpHeaders;
  readonly #path: string;
  readonly #method: DirectUnaryMethod;
  readonly #options: DirectUnaryOptions;
  readonly #started: number;
  #deadline = Infinity;
  #replied = false;

  constructor(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    path: string,
    method: DirectUnaryMethod,
    options: DirectUnaryOptions,
  ) {
    this.#stream = stream;
    this.#headers = headers;
    this.#path = path;
    this.#method = method;
    this.#options = options;
    const calls = options.calls;
    this.#started = calls === undefined ? 0 : performance.now();
    calls?.start(path);
  }

  fail(code: number, message: string, retryAfter?: unknown[]): void {
    const extra = retryAfter?.length
      ? { [RETRY_AFTER_MS]: String(retryAfter[0]) }
      : undefined;
    if (trailersOnly(this.#stream, RESPONSE_HEADERS, code, message, extra)) {
      this.#options.calls?.end(
        this.#path,
        code,
        performance.now() - this.#started,
      );
    }
  }

  done(request: Uint8Array, deadline: number): void {
    this.#deadline = deadline;
    let result: Uint8Array | Promise<Uint8Array> | void;
    try {
      result = this.#method(
        request,
        this.#headers,
        this.#stream.session,
        this,
      );
    } catch (err) {
      return this.reply(err);
    }
    if (result instanceof Uint8Array) this.reply(undefined, result);
    else if (result !== undefined) {
      result.then((r) => this.reply(undefined, r), (e) => this.reply(e));
    }
  }

  gone(): boolean {
    const stream = this.#stream;
    return stream.destroyed || stream.closed || Date.now() >= this.#deadline;
  }

  // The client may have gone while the method waited (a token, a commit):
  // fail() and answer() send nothing to a closed stream.
  reply(err: unknown, response?: Uint8Array): void {
    if (this.#replied) return;
    this.#replied = true;
    if (err !== undefined && err !== null) {
      if (Date.now() >= this.#deadline) {
        return this.fail(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
      }
      const status = toServiceError(err, this.#options.onInternal);
      return this.fail(
        status.code,
        status.details,
        status.metadata.get(RETRY_AFTER_MS),
      );
    }
    this.#answer(frameMessage(response!));
  }

  replyFramed(framed: Uint8Array): void {
    if (this.#replied) return;
    this.#replied = true;
    this.#answer(framed);
  }

  #answer(framed: Uint8Array): void {
    this.#options.calls?.end(this.#path, 0, performance.now() - this.#started);
    answer(this.#stream, framed);
  }
}

/** Headers, the framed response, OK trailers; unless the call is gone. */
function answer(stream: http2.ServerHttp2Stream, framed: Uint8Array): void {
  if (stream.destroyed || stream.closed) return;
  if (stream instanceof H2ServerStream) {
    // Our stream takes trailers right behind the data (they wait for it if
    // flow control holds it back): no 'wantTrailers' listener and no ticks.
    stream.respond(RESPONSE_HEADERS, NO_OPTIONS);
    stream.write(framed);
    stream.sendTrailers(OK_TRAILERS);
    return;
  }
  stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
  stream.end(framed);
}

const NO_OPTIONS = Object.freeze({});
const WORDING = Object.freeze({
  none: "Received no request message for unary call",
  second: "Received a second request message for unary call",
});
