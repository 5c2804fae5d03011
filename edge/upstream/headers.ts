/**
 * Reading gRPC response headers and trailers from node:http2: what is
 * transport (never forwarded as metadata) and how a status is carried.
 *
 * Shared by the call logic and anyone adding another HTTP/2-based upstream.
 *
 * @module
 */
import type http2 from "node:http2";
import { decodeGrpcMessage } from "../../protocol/mod.ts";
import { Code } from "./status.ts";
import type { UpstreamStatus } from "./types.ts";

// Headers that describe the transport, never forwarded as user metadata.
const RESERVED = new Set([
  "content-type",
  "te",
  "host",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "user-agent",
  "date",
  "content-length",
]);

/** True for names the edge must not pass on as metadata in either direction. */
export function isReservedHeader(name: string): boolean {
  // grpc-status-details-bin is user-visible error detail, not transport.
  if (name === "grpc-status-details-bin") return false;
  return name.startsWith(":") || name.startsWith("grpc-") || RESERVED.has(name);
}

/** Response headers or trailers minus transport headers. */
export function userMetadata(
  h: http2.IncomingHttpHeaders,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || isReservedHeader(k)) continue;
    out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

/** The status carried by trailers (or trailers-only headers). */
export function statusFrom(h: http2.IncomingHttpHeaders): UpstreamStatus {
  const raw = h["grpc-status"];
  const code = raw === undefined ? NaN : Number(raw);
  if (!Number.isInteger(code) || code < 0 || code > 16) {
    return {
      code: Code.UNKNOWN,
      message: `upstream sent invalid grpc-status ${
        JSON.stringify(raw ?? null)
      }`,
      trailers: userMetadata(h),
    };
  }
  const msg = h["grpc-message"];
  return {
    code,
    message: typeof msg === "string" ? decodeGrpcMessage(msg) : "",
    trailers: userMetadata(h),
  };
}
