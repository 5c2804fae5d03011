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

/**
 * The closed streams of one connection; see the module doc. A ring of the
 * last CLOSED_MEMORY (id, how) pairs in two typed arrays rather than a Map:
 * a stream closes on every call, and a Map that gains and loses an entry
 * per call keeps rehashing. A frame on a closed stream, the only lookup,
 * is rare; it scans the ring, newest first, so when an id is remembered
 * twice (a reset by the peer after the release), the later answer wins, as
 * a Map's update would.
 */
export class ClosedStreams {
  readonly #ids = new Int32Array(CLOSED_MEMORY);
  readonly #hows = new Uint8Array(CLOSED_MEMORY);
  /** The slot the next remember() writes. */
  #next = 0;
  #count = 0;
  /** The highest closed id forgotten. */
  #forgottenBelow = 0;

  /** Remembers how stream `id` closed (`Closed.*`). */
  remember(id: number, how: number): void {
    const at = this.#next;
    if (this.#count === CLOSED_MEMORY) {
      // The oldest entry goes.
      const oldest = this.#ids[at];
      if (oldest > this.#forgottenBelow) this.#forgottenBelow = oldest;
    } else this.#count++;
    this.#ids[at] = id;
    this.#hows[at] = how;
    this.#next = at + 1 === CLOSED_MEMORY ? 0 : at + 1;
  }

  /** How `id` closed, by its latest entry; undefined if not remembered. */
  #how(id: number): number | undefined {
    let at = this.#next;
    for (let i = 0; i < this.#count; i++) {
      at = at === 0 ? CLOSED_MEMORY - 1 : at - 1;
      if (this.#ids[at] === id) return this.#hows[at];
    }
    return undefined;
  }

  /**
   * The answer to DATA or HEADERS (`what`) on closed stream `id`: throws for
   * a connection error, returns true for a stream error (STREAM_CLOSED),
   * false when the frame is to be ignored.
   */
  frameAfterClose(id: number, what: string): boolean {
    const how = this.#how(id);
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
