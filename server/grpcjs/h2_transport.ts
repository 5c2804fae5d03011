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
 * It needs the internals checked in internals.ts; when grpc-js failed that
 * check, `listenWithH2()` throws and the caller can use `--transport node`.
 */
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import { type H2Listener, listenH2 } from "../h2/listener.ts";
import { grpcJsLayoutProblem, http2ServersOf } from "./internals.ts";

const UNSUPPORTED_MEDIA_TYPE = Object.freeze({ ":status": 415 });
const LAYOUT_ERROR =
  "this grpc-js version's internals are not what the h2 transport expects";

/** Options of {@linkcode listenWithH2}. */
export interface H2TransportOptions {
  host: string;
  port: number;
  maxConcurrentStreams: number;
  onError?(error: unknown): void;
}

/** Listens on host:port and serves `server`'s methods over server/h2. */
export function listenWithH2(
  server: Server,
  options: H2TransportOptions,
): H2Listener {
  const before = new Set(http2ServersOf(server));
  if (typeof server.createConnectionInjector === "function") {
    server.createConnectionInjector(ServerCredentials.createInsecure());
  }
  const grpcJs = http2ServersOf(server).find((s) => !before.has(s));
  if (grpcJsLayoutProblem !== undefined || grpcJs === undefined) {
    throw new Error(
      `${LAYOUT_ERROR} (${
        grpcJsLayoutProblem ?? "no connection injector"
      }); start with --transport node`,
    );
  }
  return listenH2({
    hostname: options.host,
    port: options.port,
    maxConcurrentStreams: options.maxConcurrentStreams,
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
