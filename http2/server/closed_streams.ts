/**
 * How the recent streams of a server connection closed, so that a frame
 * arriving after the close gets the answer RFC 9113 §5.1 gives: after the
 * peer's END_STREAM any DATA or HEADERS is a connection error STREAM_CLOSED,
 * after the peer's RST_STREAM a stream error, and after ours it is ignored
 * (the peer may have sent it before it saw our reset). An id the peer
 * skipped (§5.1.1) is a connection error PROTOCOL_ERROR.
 *
 * Only the most recent {@linkcode CLOSED_MEMORY} streams are remembered, so
 * the memory is bounded; a frame on an older one gets a stream error.
 *
 * @module
 */
import { ErrorCode, H2ConnectionError } from "../../protocol/http2/frames.ts";
import { protocolError } from "../../protocol/http2/frame_parse.ts";

/** How a stream closed. */
export const Closed = {
  ENDED_BY_PEER: 1,
  RESET_BY_PEER: 2,
  RESET_BY_US: 3,
} as const;

/** Closed streams remembered per connection (the most recent ones). */
export const CLOSED_MEMORY = 128;

/** The closed streams of one connection; see the module doc. */
export class ClosedStreams {
  readonly #closed = new Map<number, number>();
  /** The highest closed id forgotten. */
  #forgottenBelow = 0;

  /** Remembers how stream `id` closed (`Closed.*`). */
  remember(id: number, how: number): void {
    const closed = this.#closed;
    closed.set(id, how);
    if (closed.size > CLOSED_MEMORY) {
      const oldest = closed.keys().next().value!;
      closed.delete(oldest);
      if (oldest > this.#forgottenBelow) this.#forgottenBelow = oldest;
    }
  }

  /**
   * The answer to DATA or HEADERS (`what`) on closed stream `id`: throws for
   * a connection error, returns true for a stream error (STREAM_CLOSED),
   * false when the frame is to be ignored.
   */
  frameAfterClose(id: number, what: string): boolean {
    const how = this.#closed.get(id);
    if (how === Closed.RESET_BY_US) return false;
    if (how === Closed.ENDED_BY_PEER) {
      throw new H2ConnectionError(
        ErrorCode.STREAM_CLOSED,
        `${what} on stream ${id} after its END_STREAM`,
      );
    }
    if (how === undefined && id > this.#forgottenBelow) {
      throw protocolError(`${what} on stream ${id}, below one already opened`);
    }
    return true;
  }
}
