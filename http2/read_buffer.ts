/**
 * The receive side of a frame read loop: bytes read from a socket and not
 * yet parsed, in one reusable buffer.
 *
 * @example
 * ```ts
 * const rb = new ReadBuffer(64 * 1024, 9 + 16384);
 * const n = await conn.read(rb.space());
 * if (n !== null) {
 *   rb.filled(n);
 *   rb.consumed(parse(rb.buf, rb.start, rb.end));
 * }
 * ```
 */
export class ReadBuffer {
  #buf: Uint8Array;
  readonly #minRoom: number;
  /** Where the unparsed bytes start and end in `buf`. */
  start = 0;
  end = 0;

  /** `minRoom`: the room every read gets (a whole frame must fit). */
  constructor(size: number, minRoom: number) {
    this.#buf = new Uint8Array(Math.max(size, minRoom));
    this.#minRoom = minRoom;
  }

  get buf(): Uint8Array {
    return this.#buf;
  }

  /** Where the next read goes: unparsed bytes move to the front first. */
  space(): Uint8Array {
    if (this.#buf.byteLength - this.end < this.#minRoom) {
      this.#buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
      if (this.#buf.byteLength - this.end < this.#minRoom) {
        const grown = new Uint8Array(this.#buf.byteLength * 2);
        grown.set(this.#buf.subarray(0, this.end));
        this.#buf = grown;
      }
    }
    return this.#buf.subarray(this.end);
  }

  /** `n` bytes were read into `space()`. */
  filled(n: number): void {
    this.end += n;
  }

  /** Everything before `to` is parsed. */
  consumed(to: number): void {
    this.start = to;
    if (this.start === this.end) this.start = this.end = 0;
  }

  /** Drops the unparsed bytes. */
  clear(): void {
    this.start = this.end = 0;
  }
}
