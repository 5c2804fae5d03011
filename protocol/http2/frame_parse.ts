/**
 * Reading HTTP/2 frames in place (RFC 9113 §4, §6): the checks both peers
 * make, whatever side of the connection they are on. The connection engine
 * (http2/connection.ts) dispatches on what these return; connection state
 * stays with it.
 *
 * @module
 */
import {
  DEFAULT_MAX_FRAME_SIZE,
  ErrorCode,
  Flag,
  FRAME_HEADER_BYTES,
  H2ConnectionError,
  MAX_MAX_FRAME_SIZE,
  MAX_STREAM_ID,
  MAX_WINDOW,
  readUint32,
  Setting,
} from "./frames.ts";

/** Called for each whole frame; `buf[at, at + len)` is its payload. */
export type FrameVisitor = (
  type: number,
  flags: number,
  id: number,
  buf: Uint8Array,
  at: number,
  len: number,
) => void;

/**
 * Visits every whole frame in `buf[start, end)` while `live()` holds;
 * returns where the first incomplete frame starts.
 *
 * @throws {H2ConnectionError} FRAME_SIZE_ERROR for a frame above our
 * SETTINGS_MAX_FRAME_SIZE (the protocol's default, 16 KiB), before its
 * payload has arrived.
 */
export function eachFrame(
  buf: Uint8Array,
  start: number,
  end: number,
  live: () => boolean,
  visit: FrameVisitor,
): number {
  while (end - start >= FRAME_HEADER_BYTES && live()) {
    const len = (buf[start] << 16) | (buf[start + 1] << 8) | buf[start + 2];
    if (len > DEFAULT_MAX_FRAME_SIZE) {
      throw new H2ConnectionError(
        ErrorCode.FRAME_SIZE_ERROR,
        `frame of ${len} bytes exceeds SETTINGS_MAX_FRAME_SIZE`,
      );
    }
    if (end - start - FRAME_HEADER_BYTES < len) break;
    const at = start + FRAME_HEADER_BYTES;
    start = at + len;
    visit(
      buf[at - 6],
      buf[at - 5],
      readUint32(buf, at - 4) & MAX_STREAM_ID,
      buf,
      at,
      len,
    );
  }
  return start;
}

/**
 * The end of a DATA or HEADERS payload without its padding; the payload
 * starts one byte later when the PADDED flag is set.
 */
export function paddedEnd(
  flags: number,
  buf: Uint8Array,
  at: number,
  len: number,
  what: string,
): number {
  if ((flags & Flag.PADDED) === 0) return at + len;
  if (len < 1) throw frameSizeError(`padded ${what} without a pad length`);
  const pad = buf[at];
  if (pad >= len) throw protocolError(`${what} padding exceeds the payload`);
  return at + len - pad;
}

/**
 * Reads a SETTINGS frame: `apply` gets each pair after the checks every
 * peer makes (INITIAL_WINDOW_SIZE at most 2^31-1, MAX_FRAME_SIZE within
 * range, ENABLE_PUSH 0 or 1). Returns false for an ACK.
 */
export function readSettings(
  flags: number,
  id: number,
  buf: Uint8Array,
  at: number,
  len: number,
  apply: (key: number, value: number) => void,
): boolean {
  if (id !== 0) throw protocolError("SETTINGS on a stream");
  if (flags & Flag.ACK) {
    if (len !== 0) throw frameSizeError("SETTINGS ACK with a payload");
    return false;
  }
  if (len % 6 !== 0) throw frameSizeError("SETTINGS of the wrong size");
  for (let p = at; p < at + len; p += 6) {
    const key = (buf[p] << 8) | buf[p + 1];
    const value = readUint32(buf, p + 2);
    if (key === Setting.INITIAL_WINDOW_SIZE && value > MAX_WINDOW) {
      throw flowControlError("SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1");
    }
    if (
      key === Setting.MAX_FRAME_SIZE &&
      (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE)
    ) {
      throw protocolError(`SETTINGS_MAX_FRAME_SIZE ${value}`);
    }
    if (key === Setting.ENABLE_PUSH && value > 1) {
      throw protocolError("SETTINGS_ENABLE_PUSH must be 0 or 1");
    }
    apply(key, value);
  }
  return true;
}

/** The increment of a WINDOW_UPDATE frame (0 is the caller's to judge). */
export function windowIncrement(
  buf: Uint8Array,
  at: number,
  len: number,
): number {
  if (len !== 4) throw frameSizeError("WINDOW_UPDATE of the wrong size");
  return readUint32(buf, at) & MAX_WINDOW;
}

export function protocolError(message: string): H2ConnectionError {
  return new H2ConnectionError(ErrorCode.PROTOCOL_ERROR, message);
}

export function frameSizeError(message: string): H2ConnectionError {
  return new H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, message);
}

export function flowControlError(message: string): H2ConnectionError {
  return new H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, message);
}

/**
 * Joins a header block split over HEADERS and CONTINUATION frames (RFC 9113
 * §6.2, §6.10), stripping padding and priority, within a size limit.
 *
 * Each frame's header counts toward the limit too, so a flood of empty
 * CONTINUATION frames ends like an oversized block: ENHANCE_YOUR_CALM.
 */
export class HeaderBlockReader {
  readonly #limit: number;
  #stream = 0;
  #flags = 0;
  #parts: Uint8Array[] = [];
  #bytes = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** The stream whose block awaits CONTINUATION frames, or 0. */
  get stream(): number {
    return this.#stream;
  }

  /** The flags of the HEADERS frame that began the last block. */
  get flags(): number {
    return this.#flags;
  }

  /**
   * A HEADERS frame: the whole block when it carries END_HEADERS (a view of
   * `buf`, valid until the next read), else undefined and the block waits.
   */
  headers(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): Uint8Array | undefined {
    const to = paddedEnd(flags, buf, at, len, "HEADERS");
    let from = flags & Flag.PADDED ? at + 1 : at;
    if (flags & Flag.PRIORITY) from += 5;
    if (from > to) throw protocolError("HEADERS padding exceeds the payload");
    this.#flags = flags;
    if (flags & Flag.END_HEADERS) return buf.subarray(from, to);
    this.#stream = id;
    this.#parts = [buf.slice(from, to)];
    this.#bytes = to - from + FRAME_HEADER_BYTES;
    this.#check();
    return undefined;
  }

  /** A CONTINUATION frame: the whole block at END_HEADERS, else undefined. */
  continuation(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): Uint8Array | undefined {
    if (this.#stream === 0 || id !== this.#stream) {
      throw protocolError("CONTINUATION without a header block in progress");
    }
    this.#bytes += len + FRAME_HEADER_BYTES;
    this.#check();
    this.#parts.push(buf.slice(at, at + len));
    if ((flags & Flag.END_HEADERS) === 0) return undefined;
    const parts = this.#parts;
    this.#stream = 0;
    this.#parts = [];
    const block = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let off = 0;
    for (const p of parts) {
      block.set(p, off);
      off += p.byteLength;
    }
    return block;
  }

  #check(): void {
    if (this.#bytes > this.#limit) {
      throw new H2ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `header block over ${this.#limit} bytes`,
      );
    }
  }
}
