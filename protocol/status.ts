/**
 * gRPC status codes, the one table of them, and the mappings from HTTP
 * statuses and HTTP/2 stream error codes that the gRPC HTTP/2 spec gives.
 *
 * The numbers are the gRPC ones, which Connect's `Code` enum shares, so one
 * table serves the core, the edge's protocols and the browser bridge.
 *
 * @module
 */

/** gRPC status codes. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/**
 * Trailer with a rate limit's retry hint, in ms (the core sets it; the
 * page reads it).
 */
export const RETRY_AFTER_MS = "retry-after-ms";

/**
 * Maps a non-200 HTTP status from a gRPC server (or a proxy in front of it)
 * to a gRPC code, as the gRPC HTTP/2 spec prescribes.
 */
export function codeFromHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return Code.INTERNAL;
    case 401:
      return Code.UNAUTHENTICATED;
    case 403:
      return Code.PERMISSION_DENIED;
    case 404:
      return Code.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.UNAVAILABLE;
    default:
      return Code.UNKNOWN;
  }
}

/** Maps an HTTP/2 RST_STREAM error code to a gRPC code. */
export function codeFromRstCode(rst: number): number {
  switch (rst) {
    case 0x7: // REFUSED_STREAM: the request was never processed
      return Code.UNAVAILABLE;
    case 0x8: // CANCEL
      return Code.CANCELLED;
    case 0xb: // ENHANCE_YOUR_CALM
      return Code.RESOURCE_EXHAUSTED;
    case 0xc: // INADEQUATE_SECURITY
      return Code.PERMISSION_DENIED;
    default:
      return Code.INTERNAL;
  }
}
