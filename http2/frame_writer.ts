/**
 * The outgoing side of one HTTP/2 connection: frames are appended to a
 * buffer during a turn and leave in one `conn.write()` at its end.
 *
 * Writes are serialized (one in flight; partial writes are continued), so
 * frames never interleave. Two buffers alternate: one is being written while
 * the next turn's frames fill the other, so steady traffic allocates nothing.
 *
 * @module
 */
import { atTurnEnd } from "./turn_end.ts";
import {
  Flag,
  FRAME_HEADER_BYTES,
  FrameType,
  writeFrameHeader,
  writeUint32,
} from "../protocol/http2/frames.ts";

const INITIAL_BYTES = 16 * 1024;
// A buffer grown past this by a burst is dropped once written.
const KEEP_BYTES = 256 * 1024;

/** What a {@linkcode FrameWriter} reports to its connection. */
export interface FrameWriterEvents {
  /** A socket write failed; the connection is gone. */
  onWriteError(error: Error): void;
  /** A socket write completed; `buffered` went down. */
  onWritten(): void;
}

/** Batches frames per turn into serialized socket writes. */
export class FrameWriter {
  readonly #events: FrameWriterEvents;
  #conn: Deno.Conn | undefined;
  #buf = new Uint8Array(INITIAL_BYTES);
  #len = 0;
  #spare: Uint8Array<ArrayBuffer> | undefined;
  #inFlight = 0;
  #scheduled = false;
  #writing = false;
  #dead = false;
  #idle: (() => void)[] = [];
  readonly #kick = () => {
    this.#scheduled = false;
    if (!this.#writing) void this.#run();
  };

  constructor(events: FrameWriterEvents) {
    this.#events = events;
  }

  /** Bytes queued or being written. */
  get buffered(): number {
    return this.#len + this.#inFlight;
  }

  /** Starts writing to `conn`; frames queued before this go first. */
  attach(conn: Deno.Conn): void {
    this.#conn = conn;
    this.#schedule();
  }

  /** Stops writing for good; queued bytes are dropped. */
  kill(): void {
    this.#dead = true;
    this.#len = 0;
    this.#wakeIdle();
  }

  /** Resolves once everything queued so far is written (or writing stopped). */
  idle(): Promise<void> {
    if (this.#dead || (this.#len === 0 && !this.#writing)) {
      return Promise.resolve();
    }
    this.#flushSoon();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Reserves `n` bytes; the caller fills `buf` from the returned offset. */
  reserve(n: number): number {
    const at = this.#len;
    if (at + n > this.#buf.byteLength) {
      const grown = new Uint8Array(Math.max(this.#buf.byteLength * 2, at + n));
      grown.set(this.#buf.subarray(0, at));
      this.#buf = grown;
    }
    this.#len = at + n;
    this.#schedule();
    return at;
  }

  /** The buffer `reserve()` offsets point into; valid until the next reserve. */
  get buf(): Uint8Array {
    return this.#buf;
  }

  /** Appends a frame header. */
  header(length: number, type: number, flags: number, streamId: number): void {
    const at = this.reserve(FRAME_HEADER_BYTES);
    writeFrameHeader(this.#buf, at, length, type, flags, streamId);
  }

  /** Appends a frame whose payload is one 32-bit value (RST_STREAM, WINDOW_UPDATE). */
  frame32(type: number, streamId: number, value: number): void {
    const at = this.reserve(FRAME_HEADER_BYTES + 4);
    writeFrameHeader(this.#buf, at, 4, type, 0, streamId);
    writeUint32(this.#buf, at + FRAME_HEADER_BYTES, value);
  }

  /** Appends raw bytes. */
  bytes(data: Uint8Array): void {
    const at = this.reserve(data.byteLength);
    this.#buf.set(data, at);
  }

  /**
   * Appends a header block as HEADERS plus as many CONTINUATION frames as
   * `maxFrame` (the peer's SETTINGS_MAX_FRAME_SIZE) needs; END_STREAM, when
   * asked for, goes on the HEADERS frame (RFC 9113 §6.2).
   */
  headerBlock(
    streamId: number,
    block: Uint8Array,
    maxFrame: number,
    endStream: boolean,
  ): void {
    let off = 0;
    let type: number = FrameType.HEADERS;
    let flags = endStream ? Flag.END_STREAM : 0;
    do {
      const n = Math.min(maxFrame, block.byteLength - off);
      if (off + n === block.byteLength) flags |= Flag.END_HEADERS;
      this.header(n, type, flags, streamId);
      this.bytes(n === block.byteLength ? block : block.subarray(off, off + n));
      off += n;
      type = FrameType.CONTINUATION;
      flags = 0;
    } while (off < block.byteLength);
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing || !this.#conn || this.#dead) return;
    this.#scheduled = true;
    atTurnEnd(this.#kick);
  }

  #flushSoon(): void {
    if (!this.#writing && this.#conn && !this.#dead) void this.#run();
  }

  async #run(): Promise<void> {
    const conn = this.#conn!;
    this.#writing = true;
    try {
      while (this.#len > 0 && !this.#dead) {
        const chunk = this.#buf;
        const n = this.#len;
        this.#buf = this.#spare ?? new Uint8Array(INITIAL_BYTES);
        this.#spare = undefined;
        this.#len = 0;
        this.#inFlight = n;
        let off = 0;
        while (off < n) off += await conn.write(chunk.subarray(off, n));
        this.#inFlight = 0;
        if (chunk.byteLength <= KEEP_BYTES) this.#spare = chunk;
        this.#events.onWritten();
      }
    } catch (e) {
      this.#inFlight = 0;
      if (!this.#dead) {
        this.#dead = true;
        this.#len = 0;
        this.#events.onWriteError(e as Error);
      }
    } finally {
      this.#writing = false;
      this.#wakeIdle();
    }
  }

  #wakeIdle(): void {
    if (this.#len > 0 && !this.#dead) return;
    const waiters = this.#idle;
    this.#idle = [];
    for (const w of waiters) w();
  }
}
