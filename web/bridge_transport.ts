/**
 * A connect-web Transport that sends streaming calls over the WebSocket bridge
 * and unary ones through another transport (gRPC-Web).
 *
 * Why: a page served over HTTP/1.1 (plain `http://`, as `deno task serve`
 * runs it) holds one TCP connection per open response, and a browser opens at
 * most six per host for the whole profile. The room subscription and the
 * metrics feed of three tabs took all six: a fourth tab could not even load
 * the page, and a tab's reconnect or SendMessage waited for a connection that
 * never came back. WebSockets are not counted in that pool, and over HTTP/2
 * (an edge behind TLS) the fetch streams share one connection, so
 * `main.ts` picks this transport only when the page came over HTTP/1.x.
 *
 * Behaves as connect-web's transports do for the page: the stream yields
 * decoded messages, a status other than OK is thrown as a ConnectError with
 * the bridge's code, message and trailers (as metadata), and aborting the signal cancels the call
 * (the bridge then cancels the core's).
 *
 * @module
 */
import {
  create,
  type DescMessage,
  type DescMethodStreaming,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import type { StreamResponse } from "@connectrpc/connect";
import { openWsCall } from "./ws_call.ts";

/**
 * `unary` goes to `base`; `stream` rides one WebSocket per call to `url`
 * (the bridge), carrying `metadata()` and the call's own headers.
 */
export function createBridgeStreamTransport(
  url: string,
  base: Transport,
  metadata: () => Record<string, string>,
): Transport {
  return {
    unary: (...args) => base.unary(...args),
    stream: (method, signal, timeoutMs, header, input) =>
      bridgeStream(url, method, signal, timeoutMs, header, input, metadata()),
  };
}

function bridgeStream<I extends DescMessage, O extends DescMessage>(
  url: string,
  method: DescMethodStreaming<I, O>,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  header: HeadersInit | undefined,
  input: AsyncIterable<MessageInitShape<I>>,
  metadata: Record<string, string>,
): Promise<StreamResponse<I, O>> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  new Headers(header).forEach((value, key) => metadata[key] = value);
  const call = openWsCall(url, {
    path: `/${method.parent.typeName}/${method.name}`,
    metadata,
    timeoutMs,
  });
  const abort = () => call.cancel();
  signal?.addEventListener("abort", abort, { once: true });
  // Requests: every input message, then half-close (a server stream has one).
  // Input that throws (or will not encode) ends the call with its error.
  let inputError: ConnectError | undefined;
  (async () => {
    try {
      for await (const m of input) {
        call.send(toBinary(method.input, create(method.input, m)));
      }
      call.closeSend();
    } catch (err) {
      inputError = ConnectError.from(err);
      call.cancel();
    }
  })();
  // The bridge sends no response headers; its status frame carries trailers.
  const trailer = new Headers();
  async function* messages(): AsyncGenerator<MessageShape<O>> {
    try {
      for await (const bytes of call.messages) {
        yield fromBinary(method.output, bytes);
      }
      const status = await call.status;
      if (signal?.aborted) throw abortError(signal);
      if (inputError) throw inputError;
      for (const [key, value] of Object.entries(status.trailers)) {
        trailer.set(key, value);
      }
      // 0 is OK (connect's Code has no name for it). As on gRPC-Web, the
      // trailers are the error's metadata (a rate limit's retry-after-ms).
      if (status.code !== 0) {
        throw new ConnectError(status.message, status.code as Code, trailer);
      }
    } finally {
      signal?.removeEventListener("abort", abort);
      // A consumer that stopped early (break) ends the call too.
      call.cancel();
    }
  }
  return Promise.resolve({
    stream: true,
    service: method.parent,
    method,
    header: new Headers(),
    trailer,
    message: messages(),
  });
}

/** The error of an aborted call: its signal's reason, as connect's transports. */
function abortError(signal: AbortSignal): ConnectError {
  return ConnectError.from(
    signal.reason ?? new DOMException("operation was aborted", "AbortError"),
    Code.Canceled,
  );
}
