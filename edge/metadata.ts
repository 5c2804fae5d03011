/**
 * Which HTTP headers cross the edge as gRPC metadata, and back.
 *
 * Requests: an allow-list. Browsers and proxies add many headers (cookies,
 * sec-fetch-*, accept-encoding, connect-*, x-grpc-web); forwarding them as
 * metadata would leak them to the core and let a client spoof protocol
 * headers such as grpc-timeout. Responses: everything the core sent except
 * protocol and hop-by-hop headers (the upstream already strips those).
 *
 * @module
 */

/** Request headers forwarded to the core as metadata. */
export const FORWARDED_REQUEST_HEADERS: readonly string[] = Object.freeze([
  "authorization",
  "custom-header-1",
  "x-user-agent",
  "x-request-id",
]);

/**
 * Picks the allow-listed request headers as metadata.
 *
 * One `get()` per allowed name, not a walk over all headers: under
 * Deno.serve each `get()` asks for one header, while iterating makes the
 * whole sorted list first, about 5 µs more per call (docs/perf-log.md).
 */
export function requestMetadata(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < FORWARDED_REQUEST_HEADERS.length; i++) {
    const name = FORWARDED_REQUEST_HEADERS[i];
    const value = headers.get(name);
    if (value !== null) out[name] = value;
  }
  return out;
}

/** Response headers the edge sets itself, never taken from core metadata. */
const EDGE_OWNED = new Set([
  "content-type",
  "content-length",
  "content-encoding",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "access-control-allow-origin",
  "access-control-expose-headers",
  "vary",
]);

/** True for core metadata that may be sent to the browser as a header. */
export function isForwardableResponseHeader(name: string): boolean {
  if (name === "grpc-status-details-bin") return true;
  return !EDGE_OWNED.has(name) && !name.startsWith(":") &&
    !name.startsWith("grpc-") && !name.startsWith("connect-") &&
    /^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name);
}

// Visible ASCII, space and tab: what both Headers and a trailer line accept.
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;

/**
 * The core's metadata that may reach the browser, as header pairs; values a
 * header line cannot hold are dropped rather than failing the response.
 */
export function forwardableResponseHeaders(
  metadata: Record<string, string>,
): [string, string][] {
  const out: [string, string][] = [];
  // for-in, not Object.entries: most calls have no metadata at all, and
  // then nothing is allocated but the empty list.
  for (const k in metadata) {
    const v = metadata[k];
    if (isForwardableResponseHeader(k) && HEADER_VALUE.test(v)) {
      out.push([k, v]);
    }
  }
  return out;
}
