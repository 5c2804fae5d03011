/**
 * Base64 for `application/grpc-web-text`, in both directions, streaming.
 *
 * gRPC-Web text bodies may be a concatenation of separately encoded chunks,
 * so padding can appear between frames ("...AA==gAAA..."). The decoder
 * therefore works quad by quad and accepts a padded quad anywhere, while
 * still rejecting characters outside the alphabet and misplaced '='.
 *
 * @module
 */
import { ProtocolError } from "./errors.ts";

const ALPHABET =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const PAD = 0x3d; // '='
const INVALID = 0xff;

const DECODE = new Uint8Array(256).fill(INVALID);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;
// The URL-safe alphabet costs nothing to accept.
DECODE["-".charCodeAt(0)] = 62;
DECODE["_".charCodeAt(0)] = 63;

/** Encodes bytes as padded standard base64. */
export function encodeBase64(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] +
      ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + "==";
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] +
      ALPHABET[(n >> 6) & 63] + "=";
  }
  return out;
}

/**
 * Decodes base64 text arriving in chunks of any size.
 *
 * @example
 * ```ts
 * const dec = new Base64Decoder();
 * const a = dec.push(new TextEncoder().encode("AAAA"));
 * const b = dec.finish(); // throws on a dangling single character
 * ```
 */
export class Base64Decoder {
  #quad = 0; // bits collected in the current quad
  #fill = 0; // characters in the current quad
  #pad = 0; // '=' seen in the current quad
  #offset = 0; // characters consumed, for error messages

  /** Feeds ASCII bytes (or a string); returns the bytes they completed. */
  push(chunk: Uint8Array | string): Uint8Array<ArrayBuffer> {
    const input = typeof chunk === "string"
      ? new TextEncoder().encode(chunk)
      : chunk;
    const out = new Uint8Array(Math.ceil((this.#fill + input.length) / 4) * 3);
    let o = 0;
    for (let i = 0; i < input.length; i++, this.#offset++) {
      const c = input[i];
      if (c === PAD) {
        if (this.#fill < 2) this.#fail("'=' too early in a quad");
        this.#pad++;
        this.#fill++;
      } else {
        const v = DECODE[c];
        if (v === INVALID) {
          this.#fail(`invalid character 0x${c.toString(16)}`);
        }
        if (this.#pad > 0) this.#fail("data after '='");
        this.#quad = (this.#quad << 6) | v;
        this.#fill++;
      }
      if (this.#fill === 4) {
        o = this.#flush(out, o);
      }
    }
    return out.subarray(0, o);
  }

  /** Ends the input; emits an unpadded tail, throws on a dangling char. */
  finish(): Uint8Array<ArrayBuffer> {
    if (this.#fill === 0) return new Uint8Array(0);
    if (this.#fill === 1 || this.#pad > 0) {
      this.#fail("base64 ended inside a quad");
    }
    this.#pad = 4 - this.#fill;
    const out = new Uint8Array(3);
    return out.subarray(0, this.#flush(out, 0));
  }

  #flush(out: Uint8Array, o: number): number {
    // Padding shifts the real bits up as if the '=' were zero digits.
    const n = this.#quad << (6 * this.#pad);
    out[o++] = (n >> 16) & 0xff;
    if (this.#pad < 2) out[o++] = (n >> 8) & 0xff;
    if (this.#pad < 1) out[o++] = n & 0xff;
    this.#quad = 0;
    this.#fill = 0;
    this.#pad = 0;
    return o;
  }

  #fail(why: string): never {
    throw new ProtocolError(
      "base64",
      `malformed base64 at ${this.#offset}: ${why}`,
    );
  }
}
