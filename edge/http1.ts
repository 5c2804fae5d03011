/**
 * Bidi calls over HTTP/1.1.
 *
 * The edge refuses those whose request body is streamed by default, as
 * connect-es's own handler refuses every one (`protocolNegotiatingHandler`:
 * bidi needs HTTP/2; a client coded for full duplex would hang on an
 * HTTP/1.1 connection that is not), for gRPC-Web and Connect alike, and for
 * a reason of Deno's besides. One whose client declared the whole body's
 * length is served half duplex ({@linkcode wholeBodyFirst}). Deno 2.9 serves HTTP/1.1
 * on its own server (`libs/http_h1`, default since 2.8.3): while a streamed
 * response is open, its writer watches the socket for the client going away,
 * and when it reads the end of the stream there it wakes no pending read of
 * the request body (`poll_peer_closed_with` wakes the body's reader only for
 * bytes). So a bidi call whose client leaves before ending its request body
 * keeps that read pending for good, and with it the socket and its buffer:
 * an edge that served such calls from a client that leaves mid-call (the
 * usual way to end a chat) ran out of descriptors over time, and any peer
 * could make it do so (docs/perf-log.md, "stop 32"). Cancelling the body's
 * reader does not end that read. HTTP/2 (h2c, or TLS with ALPN) is served by
 * hyper, which has no such leak; unary, server-streaming and client-streaming
 * calls answer only once the request body has ended, so none of them leaks.
 *
 * @module
 */
import { Code } from "./upstream/status.ts";

/**
 * Whether the request came over HTTP/1.x: an HTTP/1.1 request always names
 * its host in a `Host` header, which an HTTP/2 request carries in
 * `:authority` (Deno.serve hands over no `host` for those; RFC 9113 §8.3.1).
 */
export function isHttp1(request: Request): boolean {
  return request.headers.has("host");
}

/**
 * The `content-length` a request declares, if it is a valid one; undefined
 * for a body sent chunked (or a malformed length, which Deno refuses first).
 */
export function declaredLength(request: Request): number | undefined {
  const declared = request.headers.get("content-length");
  const length = declared === null ? NaN : Number(declared);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/**
 * Whether a bidi call over HTTP/1.1 can be served: its client declared the
 * whole body's length (curl's `--data-binary`, a `fetch` of bytes), at most
 * `maxBytes`, so the edge reads it whole before the call starts and
 * answers after; the client has sent everything anyway, and a client that
 * leaves before ending it is heard by that read (no streamed answer is
 * open yet), so nothing stays. A streamed (chunked) body is refused.
 */
export function wholeBodyFirst(request: Request, maxBytes: number): boolean {
  const length = declaredLength(request);
  return length !== undefined && length <= maxBytes;
}

/** The status a refused bidi call gets, with a message that says what to do. */
export function http1BidiRefused(maxBytes: number): {
  code: number;
  message: string;
} {
  return {
    code: Code.UNIMPLEMENTED,
    message:
      "bidirectional streaming needs HTTP/2: this request came over HTTP/1.1 " +
      "with a streamed body (use an HTTP/2 connection, the WebSocket bridge " +
      `at /ws, or send the whole body at once with a content-length of at most ${maxBytes} bytes)`,
  };
}
