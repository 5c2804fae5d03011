/**
 * The one place where domain errors become gRPC statuses.
 *
 * A ChatError keeps its message; anything else is a bug, so the client gets
 * INTERNAL with a generic message and the cause is logged here, never sent.
 */
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { RETRY_AFTER_MS } from "../../protocol/status.ts";
import { ChatError, type ChatErrorCode } from "../rooms/errors.ts";

const CODES: Readonly<Record<ChatErrorCode, status>> = {
  invalid_argument: status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  permission_denied: status.PERMISSION_DENIED,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  failed_precondition: status.FAILED_PRECONDITION,
  cancelled: status.CANCELLED,
  deadline_exceeded: status.DEADLINE_EXCEEDED,
  internal: status.INTERNAL,
};

/** Trailer with a rate limit's retry hint, in ms. */
export { RETRY_AFTER_MS };

/** Converts any thrown value into a ServiceError for grpc-js. */
export function toServiceError(
  err: unknown,
  onInternal?: (err: unknown) => void,
): ServiceError {
  let code = status.INTERNAL;
  let details = "internal error";
  const metadata = new Metadata();
  if (ChatError.is(err)) {
    code = CODES[err.code];
    details = err.message;
    if (err.retryAfterMs !== undefined) {
      metadata.set(RETRY_AFTER_MS, String(err.retryAfterMs));
    }
  } else {
    onInternal?.(err);
  }
  const error = new Error(details) as ServiceError;
  error.code = code;
  error.details = details;
  error.metadata = metadata;
  return error;
}
