/**
 * The edge's status error and the statuses of calls that end at the edge.
 * The code table itself is protocol/status.ts (re-exported here).
 *
 * @module
 */
import { Code } from "../../protocol/status.ts";
import type { UpstreamStatus } from "./types.ts";

export {
  Code,
  codeFromHttpStatus,
  codeFromRstCode,
} from "../../protocol/status.ts";

/** An error that carries the gRPC status it should end a call with. */
export class StatusError extends Error {
  override readonly name = "StatusError";

  constructor(readonly code: number, message: string) {
    super(message);
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
