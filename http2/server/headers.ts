/**
 * Request header validation (RFC 9113 §8.2, §8.3) and the Node-style header
 * object grpc-js reads; response header encoding.
 *
 * @module
 */
import type { HeaderField, HpackEncoder } from "../../protocol/http2/hpack.ts";
import type { IncomingHeaders, OutgoingHeaders } from "./stream.ts";

const REQUEST_PSEUDO = new Set([":method", ":path", ":scheme", ":authority"]);
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

/**
 * The header object of a request (null prototype, lowercase names, a
 * repeated name as an array, cookies joined), or a string saying why the
 * request is malformed (the stream is then reset with PROTOCOL_ERROR).
 */
export function toIncomingHeaders(
  fields: readonly HeaderField[],
): IncomingHeaders | string {
  const headers: IncomingHeaders = Object.create(null);
  let regular = false;
  for (const [name, value] of fields) {
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-header ${name} after a regular header`;
      if (!REQUEST_PSEUDO.has(name)) return `unknown pseudo-header ${name}`;
      if (headers[name] !== undefined) return `repeated ${name}`;
      headers[name] = value;
      continue;
    }
    regular = true;
    if (name !== name.toLowerCase()) return `uppercase header name ${name}`;
    if (
      CONNECTION_SPECIFIC.has(name) || (name === "te" && value !== "trailers")
    ) {
      return `connection-specific header ${name}`;
    }
    const prev = headers[name];
    if (prev === undefined) headers[name] = value;
    else if (typeof prev !== "string") prev.push(value);
    else {headers[name] = name === "cookie"
        ? `${prev}; ${value}`
        : [prev, value];}
  }
  if (
    headers[":method"] === undefined || headers[":path"] === undefined ||
    headers[":scheme"] === undefined
  ) {
    return "a request needs :method, :path and :scheme";
  }
  if (headers[":path"] === "") return "empty :path";
  const length = headers["content-length"];
  if (length !== undefined && contentLength(length) < 0) {
    return "content-length is not one decimal number";
  }
  return headers;
}

/**
 * A trailer block's complaint (pseudo-header fields may not appear in
 * trailers, RFC 9113 §8.1), or undefined when it is well-formed.
 */
export function trailerError(
  fields: readonly HeaderField[],
): string | undefined {
  for (const [name] of fields) {
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header ${name} in trailers`;
  }
  return undefined;
}

/**
 * The value of a request's content-length header, -1 when it is not one
 * decimal number (repeats are an array; RFC 9110 §8.6 allows only equal
 * repeats, which no client needs).
 */
export function contentLength(value: string | string[]): number {
  if (typeof value !== "string" || !/^[0-9]{1,15}$/.test(value)) return -1;
  return Number(value);
}

/**
 * The HPACK block of response headers or trailers given as Node takes them
 * (`:status` first, names lower-cased, arrays as repeated fields). A frozen
 * object (a constant response, e.g. gRPC's OK trailers) goes through the
 * connection's `encodeConstant()`: its fields enter the client's dynamic
 * table once and cost an octet each afterwards, on the wire and in the
 * client's decoder, and its block is encoded once per connection.
 */
export function encodeResponseHeaders(
  encoder: HpackEncoder,
  headers: OutgoingHeaders,
): Uint8Array {
  if (Object.isFrozen(headers)) {
    return encoder.encodeConstant(headers, () => headerFields(headers));
  }
  return encoder.encode(headerFields(headers));
}

function headerFields(headers: OutgoingHeaders): [string, string][] {
  const fields: [string, string][] = [];
  const status = headers[":status"];
  if (status !== undefined) fields.push([":status", String(status)]);
  for (const name in headers) {
    if (name === ":status") continue;
    const value = headers[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (typeof value === "object") {
      for (const v of value) fields.push([lower, v]);
    } else {
      fields.push([lower, String(value)]);
    }
  }
  return fields;
}
