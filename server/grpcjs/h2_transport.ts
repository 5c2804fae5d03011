/**
 * Runs a grpc-js Server over the core's own HTTP/2 server (http2/server/)
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
import { type H2Listener, listenH2 } from "../../http2/server/listener.ts";
import { grpcJsLayoutProblem, http2ServersOf } from "./internals.ts";
import type { H2ServerStream } from "../../http2/server/stream.ts";
import {
  DEFAULT_REQUEST_BUDGET,
  RequestBudget,
} from "../../http2/server/request_budget.ts";
import {
  Code,
  encodeGrpcMessage,
  parseGrpcTimeout,
  practicalTimeout,
} from "../../protocol/mod.ts";

const UNSUPPORTED_MEDIA_TYPE = Object.freeze({
  ":status": 415,
  "content-type": "text/plain; charset=utf-8",
});
const NOT_GRPC_BODY = new TextEncoder().encode(
  "415 Unsupported Media Type: a gRPC server (content-type application/grpc)\n",
);
/** Request bytes of a non-gRPC request read (and dropped) before we reset it. */
const NOT_GRPC_DRAIN_BYTES = 64 * 1024;
const LAYOUT_ERROR =
  "this grpc-js version's internals are not what the h2 transport expects";

/** Options of {@linkcode listenWithH2}. */
export interface H2TransportOptions {
  host: string;
  port: number;
  maxConcurrentStreams: number;
  /** Connections served at once (0: no bound). */
  maxConnections?: number;
  /** Connections served at once from one client address (0: no bound). */
  maxConnectionsPerIp?: number;
  /** PEM certificate chain and key for TLS (ALPN h2). */
  tls?: { cert: string; key: string };
  /** Unfinished request-message bytes one connection may hold. */
  requestBufferPerConnection?: number;
  /** Unfinished request-message bytes all connections may hold. */
  requestBufferTotal?: number;
  keepaliveIntervalMs?: number;
  keepaliveTimeoutMs?: number;
  idleTimeoutMs?: number;
  onError?(error: unknown): void;
}

/** The listener, and the bytes its request budget holds now. */
export interface H2TransportListener extends H2Listener {
  readonly requestBudget: RequestBudget;
}

/** Listens on host:port and serves `server`'s methods over http2/server/. */
export function listenWithH2(
  server: Server,
  options: H2TransportOptions,
): H2TransportListener {
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
  const requestBudget = new RequestBudget(
    options.requestBufferPerConnection ?? DEFAULT_REQUEST_BUDGET.perConnection,
    options.requestBufferTotal ?? DEFAULT_REQUEST_BUDGET.total,
  );
  const listener = listenH2({
    hostname: options.host,
    port: options.port,
    maxConcurrentStreams: options.maxConcurrentStreams,
    maxConnections: options.maxConnections,
    maxConnectionsPerIp: options.maxConnectionsPerIp,
    tls: options.tls,
    keepaliveIntervalMs: options.keepaliveIntervalMs,
    keepaliveTimeoutMs: options.keepaliveTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs,
    requestBudget,
    onStream(stream, headers) {
      const type = headers["content-type"];
      if (typeof type !== "string" || !type.startsWith("application/grpc")) {
        // grpc-js means to answer 415 here, but reads the status from
        // http2.constants, where Deno lacks it.
        answerNotGrpc(stream);
        return;
      }
      // grpc-js arms `setTimeout(ms | 0)`: from 597H on that overflows and
      // ends the call at once. A deadline that far away means none.
      const rawTimeout = headers["grpc-timeout"] as string | undefined;
      const timeout = parseGrpcTimeout(rawTimeout);
      if (timeout !== undefined && practicalTimeout(timeout) === undefined) {
        delete headers["grpc-timeout"];
      } else if (timeout === undefined && rawTimeout !== undefined) {
        // grpc-js queues this answer but starts the call anyway (Chat and
        // UploadMessages then ran as if no deadline was sent): every method
        // gets it here, as the direct paths answer it (one_request.ts).
        endCall(
          stream,
          Code.INTERNAL,
          `Invalid grpc-timeout value "${rawTimeout}"`,
        );
        stream.resume();
        return;
      }
      // emit(), not a saved listener: enableDirectUnary() may wrap it later.
      grpcJs.emit("stream", stream, headers);
    },
    onOverBudget: overBudget,
    onHeadersTooLarge(stream, reason, fields) {
      // A request that says it is not gRPC gets the listener's 431; one cut
      // before its content-type (or trailers) is taken as gRPC, our
      // protocol: a trailers-only RESOURCE_EXHAUSTED naming the limit,
      // which grpc-js and grpcio report as such.
      const type = fields.find(([name]) => name === "content-type")?.[1];
      if (type !== undefined && !type.startsWith("application/grpc")) return;
      overBudget(stream, reason);
    },
    onError: options.onError,
  });
  return Object.assign(listener, { requestBudget });
}

/**
 * 415 with a short body, sent once the request has ended (its bytes are
 * dropped), so the request is still checked to its end as HTTP/2 requires
 * (content-length, trailers). Answering earlier made curl stop its upload
 * half-way, which the content-length check then reset with PROTOCOL_ERROR.
 * A request that goes on past NOT_GRPC_DRAIN_BYTES is answered then and cut
 * off with RST_STREAM(NO_ERROR).
 */
function answerNotGrpc(stream: H2ServerStream): void {
  const answer = () => {
    if (stream.headersSent || stream.destroyed) return;
    stream.respond(UNSUPPORTED_MEDIA_TYPE);
    stream.end(NOT_GRPC_BODY);
  };
  let dropped = 0;
  stream.on("data", (chunk: Uint8Array) => {
    dropped += chunk.byteLength;
    if (dropped > NOT_GRPC_DRAIN_BYTES) answer();
  });
  stream.once("end", answer);
}

/**
 * A call over the request budget, or with a header list above the limit,
 * ends with RESOURCE_EXHAUSTED.
 */
function overBudget(stream: H2ServerStream, reason: string): void {
  endCall(stream, Code.RESOURCE_EXHAUSTED, reason);
}

/** Ends a call with `code` and `message`, trailers-only if nothing was sent. */
function endCall(stream: H2ServerStream, code: number, message: string): void {
  const status = {
    "grpc-status": String(code),
    "grpc-message": encodeGrpcMessage(message),
  };
  if (!stream.headersSent) {
    stream.respond({
      ":status": 200,
      "content-type": "application/grpc",
      ...status,
    }, { endStream: true });
  } else {
    stream.sendTrailers(status);
  }
}
