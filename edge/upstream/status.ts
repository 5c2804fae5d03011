/**
 * gRPC status codes and the mappings the edge needs at its boundaries.
 *
 * The numbers are the gRPC ones, which Connect's `Code` enum shares, so one
 * table serves both protocols.
 *
 * @module
 */
import type { UpstreamStatus } from "./types.ts";

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

/** An error that carries the gRPC status it should end a call with. */
export class StatusError extends Error {
  override readonly name = "StatusError";

  constructor(readonly code: number, message: string) {
    super(message);
  }
}

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

/**
 * The status for an aborted call: a {@linkcode StatusError} reason keeps its
 * code (a handler's own deadline), a TimeoutError means DEADLINE_EXCEEDED,
 * anything else is the client cancelling.
 */
export function statusFromAbort(reason: unknown): UpstreamStatus {
  if (reason instanceof StatusError) {
    return { code: reason.code, message: reason.message, trailers: {} };
  }
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return {
      code: Code.DEADLINE_EXCEEDED,
      message: "deadline exceeded",
      trailers: {},
    };
  }
  return {
    code: Code.CANCELLED,
    message: "call cancelled by the client",
    trailers: {},
  };
}

/**
 * The status for a request body that failed while being read: a
 * {@linkcode StatusError} keeps its code (e.g. a malformed gRPC-Web frame),
 * anything else is INTERNAL.
 */
export function statusFromRequestError(err: unknown): UpstreamStatus {
  return err instanceof StatusError
    ? { code: err.code, message: err.message, trailers: {} }
    : {
      code: Code.INTERNAL,
      message: "reading the request failed",
      trailers: {},
    };
}
