/**
 * The one door to grpc-js's HTTP/2 'stream' listener: each HTTP/2 server
 * grpc-js keeps (its private `http2Servers` map) has exactly one listener
 * for new request streams, and the direct unary path and call tracing both
 * wrap it. The feature check lives here once: with another grpc-js layout
 * nothing is wrapped and the callers report 0.
 */
import type { Server } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import type http2 from "node:http2";

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
  const servers = (server as unknown as { http2Servers?: unknown })
    .http2Servers;
  if (!(servers instanceof Map)) return 0;
  let wrapped = 0;
  for (const candidate of servers.keys()) {
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
