/**
 * CORS for browser gRPC-Web and Connect calls, matching the seed's Envoy
 * route plus the headers Connect clients send.
 *
 * Exposed headers matter as much as allowed ones: without grpc-status and
 * grpc-message in Access-Control-Expose-Headers a browser client cannot read
 * a trailers-only error and reports a generic failure instead.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";

/** Methods allowed cross-origin (the seed's Envoy list). */
export const CORS_ALLOW_METHODS: readonly string[] = [
  "GET",
  "PUT",
  "DELETE",
  "POST",
  "OPTIONS",
];

/** Request headers allowed cross-origin. */
export const CORS_ALLOW_HEADERS: readonly string[] = [
  "keep-alive",
  "user-agent",
  "cache-control",
  "content-type",
  "content-transfer-encoding",
  "custom-header-1",
  "x-accept-content-transfer-encoding",
  "x-accept-response-streaming",
  "x-user-agent",
  "x-grpc-web",
  "grpc-timeout",
  "connect-protocol-version",
  "connect-timeout-ms",
  "connect-content-encoding",
  "connect-accept-encoding",
  "grpc-encoding",
  "grpc-accept-encoding",
  "authorization",
  "x-request-id",
];

/** Response headers readable by browser code. */
export const CORS_EXPOSE_HEADERS: readonly string[] = [
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "grpc-encoding",
  "custom-header-1",
  "connect-content-encoding",
  "connect-accept-encoding",
  "content-encoding",
  // The core's hint with RESOURCE_EXHAUSTED from its rate limit.
  "retry-after-ms",
];

/** Preflight cache lifetime in seconds (the seed's 20 days). */
export const CORS_MAX_AGE = 1728000;

/** The CORS middleware for the given allowed origins (["*"] for any). */
export function edgeCors(allowedOrigins: readonly string[]): MiddlewareHandler {
  const any = allowedOrigins.includes("*");
  const allowed = new Set(allowedOrigins);
  return cors({
    // A disallowed origin gets no Access-Control-Allow-Origin at all.
    origin: any ? "*" : (origin) => allowed.has(origin) ? origin : null,
    allowMethods: [...CORS_ALLOW_METHODS],
    allowHeaders: [...CORS_ALLOW_HEADERS],
    exposeHeaders: [...CORS_EXPOSE_HEADERS],
    maxAge: CORS_MAX_AGE,
  });
}

/**
 * The CORS headers {@linkcode edgeCors} adds to a non-preflight response,
 * as header pairs, for handlers that answer without going through Hono.
 *
 * Same rules as Hono's `cors()` for a simple request: Allow-Origin when the
 * origin is allowed, Expose-Headers always, and `Vary: Origin` unless any
 * origin is allowed (tests/edge_perf_fast_path_test.ts compares the two).
 */
export function corsSimpleHeaders(
  allowedOrigins: readonly string[],
): (origin: string | null) => [string, string][] {
  const expose = CORS_EXPOSE_HEADERS.join(",");
  if (allowedOrigins.includes("*")) {
    const fixed: [string, string][] = [
      ["access-control-allow-origin", "*"],
      ["access-control-expose-headers", expose],
    ];
    return () => fixed;
  }
  const allowed = new Set(allowedOrigins);
  return (origin) => {
    const out: [string, string][] = [];
    if (origin && allowed.has(origin)) {
      out.push(["access-control-allow-origin", origin]);
    }
    out.push(["access-control-expose-headers", expose], ["vary", "Origin"]);
    return out;
  };
}
