/**
 * The one error type of the framing layer.
 *
 * Framing code knows nothing of gRPC status codes; the `kind` lets the edge
 * map an oversize message to RESOURCE_EXHAUSTED and everything else to a
 * malformed-request status without matching on message text.
 *
 * @module
 */

/** What was wrong with the bytes. */
export type ProtocolErrorKind =
  | "truncated"
  | "oversize"
  | "flags"
  | "base64"
  | "trailer"
  | "end-stream";

/** Thrown by every parser in protocol/ for input it cannot accept. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";

  constructor(readonly kind: ProtocolErrorKind, message: string) {
    super(message);
  }
}
