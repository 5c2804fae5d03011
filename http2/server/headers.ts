/**
 * Request header validation (RFC 9113 §8.2, §8.3) and the Node-style header
 * object grpc-js reads; response header encoding.
 *
 * @module
 */
import type { HeaderField, HpackEncoder } from "../../protocol/http2/hpack.ts";
import { isLowercaseTokenChar } from "../../protocol/http2/field_name.ts";
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
 * The class of request header objects. Its prototype is an empty object
 * with a null prototype, so no name is inherited (`constructor`,
 * `__proto__`, `toString` are own properties like any other), as with
 * Node's null-prototype header objects. Unlike `Object.create(null)`,
 * which makes a dictionary-mode object, its instances keep V8's fast
 * properties: requests whose headers come in the same order share one
 * hidden class. That halved the object's cost and was the largest
 * allocation of a unary call (docs/perf-log.md, "unary per-call CPU").
 */
const RequestHeaders = function () {} as unknown as new () => IncomingHeaders;
RequestHeaders.prototype = Object.create(null);

/**
 * Why a regular field name is malformed (RFC 9113 §8.2.1: a lowercase
 * token, RFC 9110 §5.6.2), or undefined, as Deno's `node:http2` (nghttp2)
 * checks it: grpc-js would otherwise log such a name, raw, per request.
 */
function nameError(name: string): string | undefined {
  if (name.length === 0) return "empty header name";
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return `uppercase header name ${name}`;
    if (!isLowercaseTokenChar(c)) {
      return `invalid character in header name ${JSON.stringify(name)}`;
    }
  }
  return undefined;
}

const NUL_CR_LF = /[\0\r\n]/;

/**
 * Whether a field value is malformed (RFC 9113 §8.2.1): a NUL, CR or LF
 * anywhere, or a space or tab at either end. Such a value would reach
 * grpc-js, which logs it raw (a CR LF forges a log line).
 */
function badValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return false;
  let c = value.charCodeAt(0);
  if (c === 0x20 || c === 0x09) return true;
  c = value.charCodeAt(n - 1);
  if (c === 0x20 || c === 0x09) return true;
  // A regular expression scans a bearer token's ~200 characters in a third
  // of the time a charCodeAt() loop takes (0.11 against 0.30 µs for a
  // request's eight headers, measured).
  return NUL_CR_LF.test(value);
}

/**
 * The header object of a request (no inherited names, lowercase names, a
 * repeated name as an array, cookies joined), or a string saying why the
 * request is malformed (the stream is then reset with PROTOCOL_ERROR).
 */
export function toIncomingHeaders(
  fields: readonly HeaderField[],
): IncomingHeaders | string {
  const headers = new RequestHeaders();
  let regular = false;
  for (const [name, value] of fields) {
    if (badValue(value)) {
      return `malformed value of header ${JSON.stringify(name)}`;
    }
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-header ${name} after a regular header`;
      if (!REQUEST_PSEUDO.has(name)) return `unknown pseudo-header ${name}`;
      if (headers[name] !== undefined) return `repeated ${name}`;
      headers[name] = value;
      continue;
    }
    regular = true;
    const bad = nameError(name);
    if (bad !== undefined) return bad;
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
    return encoder.encodeConstant(headers, headerFields);
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
