/**
 * Request header validation (RFC 9113 §8.2, §8.3) and the Node-style header
 * object grpc-js reads.
 *
 * @module
 */
import type { HeaderField } from "../../protocol/http2/hpack.ts";
import type { IncomingHeaders } from "./stream.ts";

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
  return headers;
}
