/**
 * Writes an iterable of request messages onto an HTTP/2 stream as gRPC
 * frames, waiting for 'drain' when the stream's buffer is full, then
 * half-closes. A failing request iterable ends the call with its status.
 *
 * @module
 */
import type http2 from "node:http2";
import { encodeEnvelope } from "../../protocol/mod.ts";
import { statusFromRequestError } from "./status.ts";
import type { RequestMessages, UpstreamStatus } from "./types.ts";

/** Writes request messages, honouring backpressure, then half-closes. */
export async function pump(
  stream: http2.ClientHttp2Stream,
  requests: RequestMessages,
  settle: (s: UpstreamStatus) => void,
): Promise<void> {
  const it: Iterator<Uint8Array> | AsyncIterator<Uint8Array> =
    Array.isArray(requests)
      ? requests.values()
      : (requests as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const onClose = () => it.return?.();
  stream.once("close", onClose);
  try {
    while (!stream.closed) {
      const r = await it.next();
      if (r.done || stream.closed) break;
      if (!stream.write(encodeEnvelope(0, r.value))) {
        await new Promise<void>((resolve) => {
          const done = () => {
            stream.off("drain", done);
            stream.off("close", done);
            resolve();
          };
          stream.once("drain", done);
          stream.once("close", done);
        });
      }
    }
    if (!stream.closed) stream.end();
  } catch (e) {
    settle(statusFromRequestError(e));
  } finally {
    stream.off("close", onClose);
  }
}
