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
 * timer is armed per call: a client that never finishes its request is
 * bounded by its own deadline and by max-concurrent-streams, as with grpc-js
 * when no `grpc-timeout` is sent.
 */
import type { Server } from "@grpc/grpc-js";
import type http2 from "node:http2";
import { Code } from "../../protocol/mod.ts";
import { frameMessage } from "../grpc/framing.ts";
import { RETRY_AFTER_MS, toServiceError } from "../grpc/status.ts";
import { divertPlainCalls } from "./stream_listeners.ts";
import { readOneRequest, trailersOnly } from "./one_request.ts";

/**
 * A unary method: request bytes in, response bytes out. It answers by
 * returning them (or a promise of them), or by returning nothing and
 * calling `reply` later (SendMessage answers once its message is committed).
 * It gets the call's headers and HTTP/2 session (for authorization and
 * per-connection limits). A method that waits before acting asks `gone()`
 * first: true once the client cancelled or the deadline passed, and then
 * it must do nothing (grpc-js's own path checks `call.cancelled`). A
 * ChatError, thrown, rejected or passed to `reply`, becomes the call's
 * status.
 */
export type DirectUnaryMethod = (
  request: Uint8Array,
  headers: http2.IncomingHttpHeaders,
  session: unknown,
  gone: () => boolean,
  reply: (err: unknown, response?: Uint8Array) => void,
) => Uint8Array | Promise<Uint8Array> | void;

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
  const calls = options.calls;
  const started = calls === undefined ? 0 : performance.now();
  calls?.start(path);

  const fail = (code: number, message: string, retryAfter?: unknown[]) => {
    const extra = retryAfter?.length
      ? { [RETRY_AFTER_MS]: String(retryAfter[0]) }
      : undefined;
    if (trailersOnly(stream, RESPONSE_HEADERS, code, message, extra)) {
      calls?.end(path, code, performance.now() - started);
    }
  };

  readOneRequest(stream, headers, options.maxMessageBytes, WORDING, {
    fail,
    done(request, deadline) {
      const failWith = (err: unknown) => {
        const status = toServiceError(err, options.onInternal);
        fail(status.code, status.details, status.metadata.get(RETRY_AFTER_MS));
      };
      const gone = () =>
        stream.destroyed || stream.closed || Date.now() >= deadline;
      // The client may have gone while the method waited (a token, a
      // commit): fail() and answer() send nothing to a closed stream.
      let replied = false;
      const reply = (err: unknown, response?: Uint8Array) => {
        if (replied) return;
        replied = true;
        if (err !== undefined && err !== null) {
          return Date.now() >= deadline
            ? fail(Code.DEADLINE_EXCEEDED, "Deadline exceeded")
            : failWith(err);
        }
        calls?.end(path, 0, performance.now() - started);
        answer(stream, response!);
      };
      let result: Uint8Array | Promise<Uint8Array> | void;
      try {
        result = method(request, headers, stream.session, gone, reply);
      } catch (err) {
        return reply(err);
      }
      if (result instanceof Uint8Array) reply(undefined, result);
      else if (result !== undefined) {
        result.then((r) => reply(undefined, r), reply);
      }
    },
  });
}

/** Headers, the one response message, OK trailers; unless the call is gone. */
function answer(stream: http2.ServerHttp2Stream, response: Uint8Array): void {
  if (stream.destroyed || stream.closed) return;
  stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
  stream.end(frameMessage(response));
}

const WORDING = Object.freeze({
  none: "Received no request message for unary call",
  second: "Received a second request message for unary call",
});
