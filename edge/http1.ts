/**
 * Bidi calls over HTTP/1.1.
 *
 * Deno 2.9 serves HTTP/1.1 on its own server (`libs/http_h1`, default since
 * 2.8.3), HTTP/2 on hyper. While a streamed response is open, the HTTP/1.1
 * server's writer watches the socket for the client going away, and when it
 * reads the end of the stream there it wakes no pending read of the request
 * body (`poll_peer_closed_with` wakes the body's reader only for bytes). So
 * a bidi call whose client leaves before ending its request body keeps that
 * read pending for good, and with it the socket and its buffer: an edge
 * that served such calls from clients that leave mid-call (the usual way to
 * end a chat) ran out of descriptors over time, and any peer could make it
 * do so (docs/perf-log.md, "stop 32"). Cancelling the body's reader does not
 * end that read. Unary, server-streaming and client-streaming calls answer
 * only once their request body has ended, so none of them leaks; HTTP/2
 * (h2c, or TLS with ALPN) does not leak at all.
 *
 * So, by default, a bidi call's request body is checked before the call
 * starts ({@linkcode bidiBody}): a chunked body, which only HTTP/1.1 has, is
 * refused, as connect-es's own handler refuses every bidi call over HTTP/1.x
 * (`protocolNegotiatingHandler`: a client coded for full duplex would hang on
 * a path that is not); a body of declared length is read whole first and
 * the call served half duplex (the client has sent everything anyway, and
 * one that leaves before the end is heard by that read: no streamed answer
 * is open yet). The check needs no guess at the HTTP version: HTTP/2 has no
 * `transfer-encoding`, and a client may leave out `Host` on HTTP/1.1 or send
 * it on HTTP/2.
 *
 * @module
 */
import { Code, StatusError } from "./upstream/status.ts";

/**
 * The `content-length` a request declares, if it is a valid one; undefined
 * for a body sent chunked (or a malformed length, which Deno refuses first).
 */
export function declaredLength(request: Request): number | undefined {
  const declared = request.headers.get("content-length");
  const length = declared === null ? NaN : Number(declared);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/** How a bidi call's request body is taken. */
export type BidiBody =
  /** As it comes: HTTP/2, or no body. */
  | { readonly take: "streamed" }
  /** Read whole before the call: its length is declared and within bounds. */
  | { readonly take: "whole" }
  /** Refused before the body is touched, with this status. */
  | {
    readonly take: "refused";
    readonly code: number;
    readonly message: string;
  };

const STREAMED: BidiBody = Object.freeze({ take: "streamed" });
const WHOLE: BidiBody = Object.freeze({ take: "whole" });

/**
 * How to take the request body of a bidi call whose messages may each be
 * `maxMessageBytes` long; `text` for a base64 body (gRPC-Web text), whose
 * bound is 4/3 of the binary one.
 */
export function bidiBody(
  request: Request,
  maxMessageBytes: number,
  text = false,
): BidiBody {
  if (request.headers.has("transfer-encoding")) {
    return {
      take: "refused",
      code: Code.UNIMPLEMENTED,
      message: "bidirectional streaming needs HTTP/2: this request came over " +
        "HTTP/1.1 with a streamed (chunked) body (use an HTTP/2 " +
        "connection, the WebSocket bridge at /ws, or send the whole body " +
        "at once with its content-length)",
    };
  }
  const length = declaredLength(request);
  if (length === undefined) return STREAMED;
  const bound = text ? Math.ceil(maxMessageBytes / 3) * 4 : maxMessageBytes;
  if (length <= bound) return WHOLE;
  return {
    take: "refused",
    code: Code.RESOURCE_EXHAUSTED,
    message: `a bidi request body sent whole is read before the call, at ` +
      `most ${bound} bytes; this one declares ${length} (stream it over ` +
      "HTTP/2, or use the WebSocket bridge at /ws)",
  };
}

/**
 * `read` (a request body read whole before its call), failed with
 * DEADLINE_EXCEEDED once `ms` pass first: the call's deadline counts from
 * the request, so a body still coming in when it passes ends the call then,
 * not when the client is done sending. Undefined `ms`: no deadline. The
 * read itself goes on until the client ends or leaves; its outcome is
 * dropped.
 */
export function readWithin<T>(
  read: Promise<T>,
  ms: number | undefined,
): Promise<T> {
  if (ms === undefined) return read;
  read.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const passed = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new StatusError(
            Code.DEADLINE_EXCEEDED,
            "deadline exceeded while reading the request",
          ),
        ),
      ms,
    );
  });
  return Promise.race([read, passed]).finally(() => clearTimeout(timer));
}
