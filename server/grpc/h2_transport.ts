/**
 * Runs a grpc-js Server over the core's own HTTP/2 server (server/h2/)
 * instead of Deno's `node:http2`.
 *
 * grpc-js's connection injector builds an http2 server object with grpc-js's
 * 'stream' listener on it (the one `enableDirectUnary()` wraps); every
 * request stream our listener accepts is emitted there, so grpc-js routes,
 * decodes, runs and ends the call as it would for its own listener. Nothing
 * of `node:http2` carries bytes: the injector's server never gets a socket.
 *
 * Feature-checked against grpc-js 1.14's `http2Servers` map; with another
 * layout `listenWithH2()` throws and the caller can use `--transport node`.
 */
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import { type H2Listener, listenH2 } from "../h2/listener.ts";

const UNSUPPORTED_MEDIA_TYPE = Object.freeze({ ":status": 415 });
const LAYOUT_ERROR =
  "this grpc-js version's internals are not what the h2 transport expects " +
  "(its http2Servers map and one 'stream' listener); start with " +
  "--transport node";

/** Options of {@linkcode listenWithH2}. */
export interface H2TransportOptions {
  host: string;
  port: number;
  maxConcurrentStreams: number;
  /** PEM certificate chain and key for TLS (ALPN h2). */
  tls?: { cert: string; key: string };
  onError?(error: unknown): void;
}

/** Listens on host:port and serves `server`'s methods over server/h2. */
export function listenWithH2(
  server: Server,
  options: H2TransportOptions,
): H2Listener {
  const servers = (server as unknown as { http2Servers?: unknown })
    .http2Servers;
  if (!(servers instanceof Map)) {
    throw new Error(LAYOUT_ERROR);
  }
  const before = new Set(servers.keys());
  server.createConnectionInjector(ServerCredentials.createInsecure());
  const created = [...servers.keys()].find((s) => !before.has(s)) as
    | EventEmitter
    | undefined;
  if (
    typeof created?.emit !== "function" ||
    created.listeners("stream").length !== 1
  ) {
    throw new Error(LAYOUT_ERROR);
  }
  const grpcJs = created;
  return listenH2({
    hostname: options.host,
    port: options.port,
    maxConcurrentStreams: options.maxConcurrentStreams,
    tls: options.tls,
    onStream(stream, headers) {
      const type = headers["content-type"];
      if (typeof type !== "string" || !type.startsWith("application/grpc")) {
        // grpc-js means to answer 415 here, but reads the status from
        // http2.constants, where Deno lacks it.
        stream.respond(UNSUPPORTED_MEDIA_TYPE, { endStream: true });
        return;
      }
      // emit(), not a saved listener: enableDirectUnary() may wrap it later.
      grpcJs.emit("stream", stream, headers);
    },
    onError: options.onError,
  });
}
