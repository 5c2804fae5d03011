/**
 * The one error type of the chat domain, with a fixed code.
 *
 * Codes name what went wrong in domain terms; the transport maps each code
 * to a gRPC status in one table (server/grpc/status.ts), so the domain never
 * imports grpc-js.
 */
export type ChatErrorCode =
  | "invalid_argument"
  | "unauthenticated"
  | "permission_denied"
  | "resource_exhausted"
  | "unavailable"
  | "failed_precondition"
  | "cancelled"
  | "deadline_exceeded"
  | "internal";

export class ChatError extends Error {
  override name = "ChatError";

  /** For RESOURCE_EXHAUSTED from a rate limit: when to try again. */
  retryAfterMs?: number;

  constructor(
    readonly code: ChatErrorCode,
    message: string,
    options?: ErrorOptions & { retryAfterMs?: number },
  ) {
    super(message, options);
    if (options?.retryAfterMs !== undefined) {
      this.retryAfterMs = options.retryAfterMs;
    }
  }

  /** Narrows unknown values at boundaries. */
  static is(value: unknown): value is ChatError {
    return value instanceof ChatError;
  }
}
