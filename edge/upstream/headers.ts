/**
 * Reading gRPC response headers and trailers from node:http2: what is
 * transport (never forwarded as metadata) and how a status is carried.
 *
 * Shared by the call logic and anyone adding another HTTP/2-based upstream.
 *
 * @module
 */
import type http2 from "node:http2";
import { decodeGrpcMessage, ProtocolError } from "../../protocol/mod.ts";
import { Code, codeFromHttpStatus } from "./status.ts";
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

/**
 * Response headers as node:http2 hands them over, or as
 * {@linkcode headerRecord} builds them from a decoded header block.
 */
export type ResponseHeaders =
  | http2.IncomingHttpHeaders
  | Readonly<Record<string, string>>;

/**
 * A decoded header block as a plain record; a repeated name is joined with
 * ", " as node:http2 does for the names the edge forwards.
 */
export function headerRecord(
  fields: Iterable<readonly [string, string]>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of fields) {
    const seen = out[name];
    out[name] = seen === undefined ? value : `${seen}, ${value}`;
  }
  return out;
}

/** Response headers or trailers minus transport headers. */
export function userMetadata(
  h: ResponseHeaders,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || isReservedHeader(k)) continue;
    out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

/** The status carried by trailers (or trailers-only headers). */
export function statusFrom(h: ResponseHeaders): UpstreamStatus {
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

/**
 * What the first header block of a response says: the call failed at the
 * HTTP level (non-200, not gRPC), it is a trailers-only answer, or a gRPC
 * response starts with this metadata.
 */
export type ResponseStart =
  | { kind: "failure"; status: UpstreamStatus }
  | { kind: "trailers-only"; status: UpstreamStatus }
  | { kind: "headers"; metadata: Record<string, string> };

/** Classifies a response's first header block (see {@linkcode ResponseStart}). */
export function responseStart(h: ResponseHeaders): ResponseStart {
  const raw = h[":status"];
  const code = Number(raw);
  const type = String(h["content-type"] ?? "");
  if (code !== 200) {
    return {
      kind: "failure",
      status: {
        code: codeFromHttpStatus(code),
        message: `upstream answered HTTP ${raw}`,
        trailers: {},
      },
    };
  }
  if (!type.startsWith("application/grpc")) {
    return {
      kind: "failure",
      status: {
        code: Code.UNKNOWN,
        message: `upstream sent content-type ${JSON.stringify(type)}`,
        trailers: {},
      },
    };
  }
  if (h["grpc-status"] !== undefined) {
    return { kind: "trailers-only", status: statusFrom(h) };
  }
  return { kind: "headers", metadata: userMetadata(h) };
}

/**
 * The status for response bytes that are not valid gRPC framing: an
 * oversize message is RESOURCE_EXHAUSTED, anything else INTERNAL.
 */
export function statusFromResponseError(err: unknown): UpstreamStatus {
  const oversize = err instanceof ProtocolError && err.kind === "oversize";
  return {
    code: oversize ? Code.RESOURCE_EXHAUSTED : Code.INTERNAL,
    message: `upstream response: ${(err as Error).message}`,
    trailers: {},
  };
}
