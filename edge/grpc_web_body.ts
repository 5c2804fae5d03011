/**
 * Reads a gRPC-Web request body (binary or base64 text) as a stream of
 * message payloads for the upstream.
 *
 * Written as a hand-made iterator rather than a generator so that `return()`
 * cancels a read that is still pending: when the core ends a client-streaming
 * call early, the body reader must let go at once, not after the browser's
 * next chunk.
 *
 * @module
 */
import {
  Base64Decoder,
  EnvelopeParser,
  ProtocolError,
} from "../protocol/mod.ts";
import { Code, StatusError } from "./upstream/status.ts";

/** Maps a framing error to the status the call ends with. */
export function statusErrorFromProtocol(e: unknown, what: string): StatusError {
  if (e instanceof ProtocolError) {
    return new StatusError(
      e.kind === "oversize" ? Code.RESOURCE_EXHAUSTED : Code.INVALID_ARGUMENT,
      `${what}: ${e.message}`,
    );
  }
  return new StatusError(Code.CANCELLED, `${what}: the request body failed`);
}

/**
 * Yields each message of the body; throws {@linkcode StatusError} on
 * malformed frames, bad base64, flags other than 0, or oversize messages.
 */
export function readGrpcWebBody(
  body: ReadableStream<Uint8Array> | null,
  options: { text: boolean; maxMessageBytes: number },
): AsyncIterable<Uint8Array> {
  const parser = new EnvelopeParser({
    maxMessageBytes: options.maxMessageBytes,
    allowedFlags: 0,
  });
  const base64 = options.text ? new Base64Decoder() : undefined;
  const reader = body?.getReader();
  const ready: Uint8Array[] = [];
  let ended = reader === undefined;

  function feed(bytes: Uint8Array): void {
    for (const env of parser.push(bytes)) ready.push(env.data);
  }

  async function next(): Promise<IteratorResult<Uint8Array>> {
    try {
      while (ready.length === 0 && !ended) {
        const r = await reader!.read();
        if (r.done) {
          ended = true;
          if (base64) feed(base64.finish());
          parser.finish();
          break;
        }
        feed(base64 ? base64.push(r.value) : r.value);
      }
    } catch (e) {
      ended = true;
      reader?.cancel().catch(() => {});
      throw statusErrorFromProtocol(e, "malformed gRPC-Web request");
    }
    const value = ready.shift();
    return value === undefined
      ? { done: true, value: undefined }
      : { done: false, value };
  }

  return {
    [Symbol.asyncIterator]: () => ({
      next,
      return() {
        ended = true;
        ready.length = 0;
        reader?.cancel().catch(() => {});
        return Promise.resolve({ done: true, value: undefined });
      },
    }),
  };
}
