/**
 * A span per gRPC call on the core, as a child of the caller's W3C trace
 * context (`traceparent`/`tracestate`, which the edge sends), when Deno's
 * OpenTelemetry is on (`OTEL_DENO=true`).
 *
 * The span has to cover every call, including those the direct unary path
 * serves without grpc-js's handlers or interceptors, so it is opened where
 * both meet: the one 'stream' listener of grpc-js's HTTP/2 server (the same
 * place `enableDirectUnary()` wraps). It ends when the HTTP/2 stream closes
 * and carries the call's grpc-status, read from the headers or trailers the
 * stream sends. Without OTEL nothing is wrapped, so calls pay nothing.
 *
 * When grpc-js failed the start-up check (internals.ts) nothing is wrapped
 * and calls simply have no span.
 */
import type { Server } from "@grpc/grpc-js";
import {
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type http2 from "node:http2";
import { Code } from "../../protocol/status.ts";
import { wrapStreamListeners } from "./stream_listeners.ts";

type Fields = Record<string, unknown> | undefined;

/**
 * Opens a span for each call on `server`'s HTTP/2 servers, if a trace
 * propagator is registered (Deno's OTEL is on). Call after
 * `enableDirectUnary()`. Returns the number of servers wrapped.
 */
export function traceCalls(server: Server): number {
  if (propagation.fields().length === 0) return 0;
  const tracer = trace.getTracer("chat-core");
  return wrapStreamListeners(
    server,
    (inner) =>
      function (stream, headers, ...rest) {
        const parent = propagation.extract(ROOT_CONTEXT, headers);
        const path = String(headers[":path"] ?? "");
        const [service = "", method = ""] = path.slice(1).split("/");
        const span = tracer.startSpan(path.slice(1) || "grpc", {
          kind: SpanKind.SERVER,
          attributes: {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
          },
        }, parent);
        watchStatus(stream, span);
        context.with(
          trace.setSpan(parent, span),
          () => inner.call(this, stream, headers, ...rest),
        );
      },
  );
}

/** Records the grpc-status the stream sends and ends the span on close. */
function watchStatus(stream: http2.ServerHttp2Stream, span: Span): void {
  let code: number | undefined;
  const note = (fields: Fields) => {
    const raw = fields?.["grpc-status"];
    if (raw !== undefined) code = Number(raw);
  };
  const respond = stream.respond;
  stream.respond = function (this: unknown, headers, options) {
    note(headers as Fields);
    return respond.call(this, headers, options);
  } as typeof stream.respond;
  const sendTrailers = stream.sendTrailers;
  stream.sendTrailers = function (this: unknown, trailers) {
    note(trailers as Fields);
    return sendTrailers.call(this, trailers);
  } as typeof stream.sendTrailers;
  stream.once("close", () => {
    if (code === undefined) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: "no status" });
    } else {
      span.setAttribute("rpc.grpc.status_code", code);
      if (code !== Code.OK) span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  });
}
