/**
 * grpc-js's HTTP/2 'stream' listener: each HTTP/2 server grpc-js keeps
 * (internals.ts) has exactly one listener for new request streams, and the
 * direct unary path and call tracing both wrap it. When grpc-js failed the
 * start-up check nothing is wrapped and the callers report 0.
 */
import type { Server } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import type http2 from "node:http2";
import { http2ServersOf, streamOpenedHook } from "./internals.ts";
import { isPlainGrpc } from "./one_request.ts";

/** grpc-js's handler of a new request stream. */
export type StreamListener = (
  this: unknown,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  ...rest: unknown[]
) => void;

/**
 * Replaces the 'stream' listener of every HTTP/2 server `server` has now
 * with `wrap(listener)`. Returns how many were wrapped.
 */
export function wrapStreamListeners(
  server: Server,
  wrap: (inner: StreamListener) => StreamListener,
): number {
  let wrapped = 0;
  for (const candidate of http2ServersOf(server)) {
    const emitter = candidate as Partial<EventEmitter> | null;
    if (
      typeof emitter?.listeners !== "function" ||
      typeof emitter.removeListener !== "function" ||
      typeof emitter.on !== "function"
    ) continue;
    const listeners = emitter.listeners("stream");
    if (listeners.length !== 1) continue;
    const inner = listeners[0] as StreamListener;
    emitter.removeListener("stream", inner);
    emitter.on("stream", wrap(inner));
    wrapped++;
  }
  return wrapped;
}

/**
 * The direct paths' door: plain gRPC calls (no compression) to a path in
 * `methods` go to `serve`, after grpc-js's per-stream bookkeeping; every
 * other stream goes to grpc-js. Returns how many listeners were wrapped.
 */
export function divertPlainCalls<M>(
  server: Server,
  methods: ReadonlyMap<string, M>,
  serve: (
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    path: string,
    method: M,
  ) => void,
): number {
  const opened = streamOpenedHook(server);
  return wrapStreamListeners(
    server,
    (grpcJs) =>
      function (stream, headers) {
        const path = headers[":path"] as string;
        const method = methods.get(path);
        if (method === undefined || !isPlainGrpc(headers)) {
          // `arguments`, not a rest parameter: no array per direct call.
          grpcJs.apply(
            this,
            arguments as unknown as Parameters<StreamListener>,
          );
          return;
        }
        opened(stream);
        serve(stream, headers, path, method);
      },
  );
}

/**
 * For `--transport node`: Deno's node:http2 emits a stream it has already
 * destroyed with its client's protocol error (a WINDOW_UPDATE of 0 right
 * after the HEADERS, say), and emits that error on the stream a tick later.
 * grpc-js's answer to such a stream threw "The stream has been destroyed"
 * out of the stream listener, and the error, with no listener, was thrown
 * too; either aborted the process (h2spec 5.1 #6, 5.1.2 #1, 6.4 #3, 6.9 #2,
 * 6.9.1 #3). Such a stream now goes to nobody (nobody waits for an answer
 * on it) and its error is kept. Wrap last: it must run first. The core's
 * own transport never emits a destroyed stream and does not pay for this.
 */
export function dropDestroyedStreams(server: Server): number {
  return wrapStreamListeners(
    server,
    (inner) =>
      function (stream) {
        if (stream.destroyed) {
          stream.on("error", () => {});
          return;
        }
        inner.apply(this, arguments as unknown as Parameters<StreamListener>);
      },
  );
}
