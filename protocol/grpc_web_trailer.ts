/**
 * The gRPC-Web trailer frame: flag 0x80, a 4-byte big-endian length, then
 * HTTP/1-style `name: value\r\n` lines.
 *
 * A fetch `Response` cannot carry HTTP trailers, so gRPC-Web moves them into
 * this last body frame. The length is always the full 4 bytes: a one-byte
 * length silently breaks as soon as a grpc-message grows past 255 bytes.
 *
 * @module
 */
import { encodeEnvelope, FLAG_TRAILER } from "./envelope.ts";
import { ProtocolError } from "./errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes trailers as a complete frame; names are lower-cased.
 *
 * Values with CR or LF would forge extra lines, so they are rejected.
 */
export function encodeGrpcWebTrailer(
  trailers: Iterable<[string, string]> | Record<string, string>,
): Uint8Array<ArrayBuffer> {
  const entries = Symbol.iterator in trailers
    ? trailers as Iterable<[string, string]>
    : Object.entries(trailers);
  let text = "";
  for (const [name, value] of entries) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value) || name.includes(":")) {
      throw new ProtocolError(
        "trailer",
        `invalid trailer ${JSON.stringify(name)}`,
      );
    }
    text += `${name.toLowerCase()}: ${value}\r\n`;
  }
  return encodeEnvelope(FLAG_TRAILER, encoder.encode(text));
}

/**
 * Parses the payload of a trailer frame (without its 5-byte prefix).
 *
 * Repeated names are joined with ", " as HTTP does for headers.
 */
export function parseGrpcWebTrailer(data: Uint8Array): Record<string, string> {
  let text: string;
  try {
    text = decoder.decode(data);
  } catch {
    throw new ProtocolError("trailer", "trailer frame is not UTF-8");
  }
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new ProtocolError(
        "trailer",
        `malformed trailer line ${JSON.stringify(line)}`,
      );
    }
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    out[name] = name in out ? `${out[name]}, ${value}` : value;
  }
  return out;
}
