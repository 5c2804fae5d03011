/**
 * The 5-byte envelope shared by gRPC, gRPC-Web and Connect streaming: one
 * flags byte, a 4-byte big-endian length, then the payload.
 *
 * The parser is incremental because HTTP bodies arrive in arbitrary chunks,
 * and it checks the declared length against the limit before allocating, so
 * a peer cannot make the edge reserve 4 GiB by sending five bytes. Below the
 * limit, a body's buffer grows with the bytes that arrived (doubling, from
 * 64 KiB), so a prefix declaring 10 MiB that is never followed by its body
 * costs what was sent, not 10 MiB.
 *
 * @module
 */
import { ProtocolError } from "./errors.ts";

/** Flag of a compressed message payload. */
export const FLAG_COMPRESSED = 0x01;
/** Flag of a Connect end-stream message (JSON). */
export const FLAG_END_STREAM = 0x02;
/** Flag of a gRPC-Web trailer frame. */
export const FLAG_TRAILER = 0x80;

/** Size of the envelope prefix. */
export const ENVELOPE_HEADER_BYTES = 5;

/** One framed payload. */
export interface Envelope {
  flags: number;
  data: Uint8Array;
}

/**
 * Writes an envelope prefix (`flags`, then `length` big-endian) into `buf`
 * at `at`; the payload goes after it. For writers that frame into a buffer
 * of their own (a Node Buffer, an HTTP/2 frame being built) with no copy.
 */
export function writeEnvelopeHeader(
  buf: Uint8Array,
  at: number,
  flags: number,
  length: number,
): void {
  buf[at] = flags;
  buf[at + 1] = length >>> 24;
  buf[at + 2] = (length >>> 16) & 0xff;
  buf[at + 3] = (length >>> 8) & 0xff;
  buf[at + 4] = length & 0xff;
}

/** The payload length of the envelope prefix at `at` (5 bytes must be there). */
export function readEnvelopeLength(bytes: Uint8Array, at: number): number {
  return (bytes[at + 1] * 0x1000000) +
    ((bytes[at + 2] << 16) | (bytes[at + 3] << 8) | bytes[at + 4]);
}

/** Frames a payload with the given flags. */
export function encodeEnvelope(
  flags: number,
  data: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(ENVELOPE_HEADER_BYTES + data.byteLength);
  writeEnvelopeHeader(out, 0, flags, data.byteLength);
  out.set(data, ENVELOPE_HEADER_BYTES);
  return out;
}

/** The first buffer of a body; it doubles as more of the body arrives. */
const FIRST_BODY_BYTES = 64 * 1024;

/** Limits of an {@linkcode EnvelopeParser}. */
export interface EnvelopeParserOptions {
  /** Largest payload accepted; larger ones throw `oversize` before allocating. */
  maxMessageBytes: number;
  /** Bit mask of the flags allowed; any other bit set throws `flags`. */
  allowedFlags: number;
}

/**
 * Splits a byte stream into envelopes, across chunk boundaries.
 *
 * @example
 * ```ts
 * const parser = new EnvelopeParser({ maxMessageBytes: 1024, allowedFlags: 0 });
 * for (const env of parser.push(chunk)) handle(env.data);
 * parser.finish(); // throws if the body ended inside a frame
 * ```
 */
export class EnvelopeParser {
  readonly #max: number;
  readonly #allowed: number;
  // Only a header split across chunks needs it: allocated then, since a
  // parser per call is common and a typed array is not free.
  #header: Uint8Array | undefined;
  #headerFill = 0;
  #body: Uint8Array | undefined;
  #bodyFill = 0;
  /** Declared size of the body being filled; `#body` may be smaller yet. */
  #bodyLength = 0;
  #flags = 0;

  constructor(options: EnvelopeParserOptions) {
    this.#max = options.maxMessageBytes;
    this.#allowed = options.allowedFlags;
  }

  /** True while a frame has started but not completed. */
  get pending(): boolean {
    return this.#headerFill > 0 || this.#body !== undefined;
  }

  /** Feeds a chunk; returns the envelopes it completed, in order. */
  push(chunk: Uint8Array): Envelope[] {
    const out: Envelope[] = [];
    let at = 0;
    while (at < chunk.byteLength) {
      if (this.#body === undefined) {
        // A whole frame inside the chunk is returned as a view, not a copy:
        // a plain Uint8Array even of a Node Buffer, whose subarray() costs
        // several times more (it builds a Buffer through its species).
        if (this.#headerFill === 0 && chunk.byteLength - at >= 5) {
          const len = this.#readHeader(chunk, at);
          if (chunk.byteLength - at - 5 >= len) {
            out.push({
              flags: this.#flags,
              data: new Uint8Array(
                chunk.buffer,
                chunk.byteOffset + at + 5,
                len,
              ),
            });
            at += 5 + len;
            continue;
          }
          this.#startBody(len);
          at += 5;
          continue;
        }
        const take = Math.min(5 - this.#headerFill, chunk.byteLength - at);
        const header = this.#header ??= new Uint8Array(ENVELOPE_HEADER_BYTES);
        header.set(chunk.subarray(at, at + take), this.#headerFill);
        this.#headerFill += take;
        at += take;
        if (this.#headerFill < 5) break;
        this.#headerFill = 0;
        const len = this.#readHeader(header, 0);
        if (len === 0) {
          out.push({ flags: this.#flags, data: new Uint8Array(0) });
          continue;
        }
        this.#startBody(len);
        continue;
      }
      const take = Math.min(
        this.#bodyLength - this.#bodyFill,
        chunk.byteLength - at,
      );
      const body = this.#room(this.#bodyFill + take);
      body.set(chunk.subarray(at, at + take), this.#bodyFill);
      this.#bodyFill += take;
      at += take;
      if (this.#bodyFill === this.#bodyLength) {
        out.push({ flags: this.#flags, data: body });
        this.#body = undefined;
      }
    }
    return out;
  }

  /** Declares the end of input; throws `truncated` inside a frame. */
  finish(): void {
    if (this.pending) {
      throw new ProtocolError("truncated", "stream ended inside a frame");
    }
  }

  #readHeader(bytes: Uint8Array, at: number): number {
    const flags = bytes[at];
    if ((flags & ~this.#allowed) !== 0) {
      throw new ProtocolError(
        "flags",
        `unexpected frame flags 0x${flags.toString(16).padStart(2, "0")}`,
      );
    }
    const len = readEnvelopeLength(bytes, at);
    if (len > this.#max) {
      throw new ProtocolError(
        "oversize",
        `message of ${len} bytes exceeds the limit of ${this.#max} bytes`,
      );
    }
    this.#flags = flags;
    return len;
  }

  #startBody(len: number): void {
    this.#body = new Uint8Array(Math.min(len, FIRST_BODY_BYTES));
    this.#bodyFill = 0;
    this.#bodyLength = len;
  }

  /** The body buffer, grown (doubling, up to the declared size) to `need`. */
  #room(need: number): Uint8Array {
    const body = this.#body!;
    if (need <= body.byteLength) return body;
    const grown = new Uint8Array(
      Math.min(this.#bodyLength, Math.max(need, 2 * body.byteLength)),
    );
    grown.set(body.subarray(0, this.#bodyFill));
    this.#body = grown;
    return grown;
  }
}

/**
 * Counts the bytes of the unfinished envelope at the end of a byte stream
 * (its prefix and the part of its body seen so far), without keeping any of
 * them: what a reader that assembles whole messages holds for that stream.
 * The core's HTTP/2 server uses it to bound request bytes held in memory.
 *
 * @example
 * ```ts
 * const meter = new EnvelopeMeter();
 * meter.push(new Uint8Array([0, 0, 0, 0, 9, 1, 2])); // 7: 5 + 2 of 9 bytes
 * ```
 */
export class EnvelopeMeter {
  #headerFill = 0;
  #length = 0;
  #left = 0;

  /** Bytes of the unfinished envelope after the last push. */
  get unfinished(): number {
    return this.#headerFill < ENVELOPE_HEADER_BYTES
      ? this.#headerFill
      : ENVELOPE_HEADER_BYTES + this.#length - this.#left;
  }

  /** Feeds a chunk; returns {@linkcode unfinished}. */
  push(chunk: Uint8Array): number {
    const n = chunk.byteLength;
    let at = 0;
    while (at < n) {
      if (this.#headerFill < ENVELOPE_HEADER_BYTES) {
        // Bytes 1-4 of the prefix are the big-endian length.
        if (this.#headerFill > 0) this.#length = this.#length * 256 + chunk[at];
        at++;
        if (++this.#headerFill === ENVELOPE_HEADER_BYTES) {
          this.#left = this.#length;
          if (this.#left === 0) this.#next();
        }
        continue;
      }
      const take = Math.min(this.#left, n - at);
      at += take;
      this.#left -= take;
      if (this.#left === 0) this.#next();
    }
    return this.unfinished;
  }

  #next(): void {
    this.#headerFill = 0;
    this.#length = 0;
  }
}
