/**
 * Carries the W3C trace context (`traceparent`, `tracestate`) on every
 * upstream call, so the core's span for a call is a child of the edge's.
 *
 * With `OTEL_DENO=true`, Deno.serve opens a span per request (a child of the
 * browser's `traceparent`, if it sent one) and registers its propagators
 * with `@opentelemetry/api`; Deno's own `fetch` injects them, but the edge's
 * HTTP/2 client is its own, so the injection happens here. Without OTEL
 * there are no propagators, and the upstream is returned as is: no cost per
 * call.
 *
 * @module
 */
import { context, propagation } from "@opentelemetry/api";
import type { Upstream } from "./types.ts";

/** True when a propagator is registered (Deno's OTEL is on). */
export function tracePropagationEnabled(): boolean {
  return propagation.fields().length > 0;
}

/**
 * `upstream` with the active trace context added to each call's metadata;
 * `upstream` itself when no propagator is registered.
 */
export function withTraceContext(upstream: Upstream): Upstream {
  if (!tracePropagationEnabled()) return upstream;
  const traced: Upstream = {
    call(path, requests, options) {
      const metadata = { ...options.metadata };
      propagation.inject(context.active(), metadata);
      return upstream.call(path, requests, { ...options, metadata });
    },
    healthy: () => upstream.healthy(),
    close: () => upstream.close(),
  };
  if (upstream.connections) {
    traced.connections = () => upstream.connections!();
  }
  return traced;
}
