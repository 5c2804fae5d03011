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
import { declaredLength } from "./http1.ts";
import type { Compression } from "@connectrpc/connect/protocol";
import {
  Base64Decoder,
  type Envelope,
  EnvelopeParser,
  FLAG_COMPRESSED,
  ProtocolError,
} from "../protocol/mod.ts";
import { Code, StatusError } from "./upstream/status.ts";

/** How a gRPC-Web request body is read. */
export interface GrpcWebBodyOptions {
  /** `application/grpc-web-text`: the body is base64. */
  text: boolean;
  maxMessageBytes: number;
  /**
   * The request's grpc-encoding: messages with the compressed flag are
   * decompressed, up to `maxMessageBytes`. Without it the flag is refused.
   */
  compression?: Compression;
  /** Receives the body's byte count as it is read. */
  counter?: { bytesIn: number };
}

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
 * Largest declared `content-length` read in one piece by
 * {@linkcode readGrpcWebRequest}; bigger or undeclared bodies are streamed.
 */
export const BUFFERED_BODY_MAX_BYTES = 64 * 1024;

/**
 * All messages of a small body with a declared length (every unary call
 * from a browser), read with one `bytes()` and parsed at once: Deno.serve
 * hands over a body it already holds without building a ReadableStream, and
 * the upstream writes a known list of messages without an iterator
 * (docs/edge-perf-log.md, docs/perf-log.md). The allocation is bounded by
 * {@linkcode BUFFERED_BODY_MAX_BYTES}. Undefined for a body that must be
 * streamed ({@linkcode readGrpcWebBody}), so client-streaming and bidi calls
 * still forward each message as it comes. Rejects with the
 * {@linkcode StatusError} the streamed read would throw.
 */
export function readSmallGrpcWebRequest(
  request: Request,
  options: GrpcWebBodyOptions,
): Promise<Uint8Array[]> | undefined {
  return isSmallBody(request) ? readAll(request, options) : undefined;
}

/**
 * All messages of a body read whole whatever its declared length (bidi over
 * HTTP/1.1: edge/http1.ts, which bounds it); as
 * {@linkcode readSmallGrpcWebRequest} otherwise.
 */
export function readWholeGrpcWebRequest(
  request: Request,
  options: GrpcWebBodyOptions,
): Promise<Uint8Array[]> {
  return readAll(request, options);
}

/** A declared `content-length` of at most the buffered bound. */
function isSmallBody(request: Request): boolean {
  return (declaredLength(request) ?? Infinity) <= BUFFERED_BODY_MAX_BYTES;
}

async function readAll(
  request: Request,
  options: GrpcWebBodyOptions,
): Promise<Uint8Array[]> {
  let envelopes: Envelope[];
  try {
    const bytes = await request.bytes();
    if (options.counter) options.counter.bytesIn += bytes.byteLength;
    envelopes = parseAll([bytes], options);
  } catch (e) {
    throw statusErrorFromProtocol(e, "malformed gRPC-Web request");
  }
  const out: Uint8Array[] = [];
  for (const env of envelopes) {
    out.push(env.flags === 0 ? env.data : await inflate(env, options));
  }
  return out;
}

/**
 * Yields each message of a request's body: {@linkcode readSmallGrpcWebRequest}
 * for a small body, {@linkcode readGrpcWebBody} for any other (the gRPC-Web
 * handler makes the same choice; tests compare the two reads with it).
 */
export function readGrpcWebRequest(
  request: Request,
  options: GrpcWebBodyOptions,
): AsyncIterable<Uint8Array> {
  if (!isSmallBody(request)) return readGrpcWebBody(request.body, options);
  return (async function* () {
    yield* await readAll(request, options);
  })();
}

/**
 * Yields each message of the body; throws {@linkcode StatusError} on
 * malformed frames, bad base64, flags other than 0, or oversize messages.
 */
export function readGrpcWebBody(
  body: ReadableStream<Uint8Array> | null,
  options: GrpcWebBodyOptions,
): AsyncIterable<Uint8Array> {
  const parser = newParser(options);
  const base64 = options.text ? new Base64Decoder() : undefined;
  const reader = body?.getReader();
  const ready: Envelope[] = [];
  const counter = options.counter;
  let ended = reader === undefined;

  function feed(bytes: Uint8Array): void {
    for (const env of parser.push(bytes)) ready.push(env);
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
        if (counter) counter.bytesIn += r.value.byteLength;
        feed(base64 ? base64.push(r.value) : r.value);
      }
    } catch (e) {
      ended = true;
      reader?.cancel().catch(() => {});
      throw statusErrorFromProtocol(e, "malformed gRPC-Web request");
    }
    const env = ready.shift();
    if (env === undefined) return { done: true, value: undefined };
    if (env.flags === 0) return { done: false, value: env.data };
    try {
      return { done: false, value: await inflate(env, options) };
    } catch (e) {
      ended = true;
      reader?.cancel().catch(() => {});
      throw e;
    }
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

function parseAll(
  chunks: Uint8Array[],
  options: GrpcWebBodyOptions,
): Envelope[] {
  const parser = newParser(options);
  const base64 = options.text ? new Base64Decoder() : undefined;
  const out: Envelope[] = [];
  const feed = (bytes: Uint8Array) => {
    for (const env of parser.push(bytes)) out.push(env);
  };
  for (const chunk of chunks) feed(base64 ? base64.push(chunk) : chunk);
  if (base64) feed(base64.finish());
  parser.finish();
  return out;
}

/** The compressed flag is allowed only when the request named an encoding. */
function newParser(options: GrpcWebBodyOptions): EnvelopeParser {
  return new EnvelopeParser({
    maxMessageBytes: options.maxMessageBytes,
    allowedFlags: options.compression ? FLAG_COMPRESSED : 0,
  });
}

/** Decompresses a flagged message, bounded by the message limit. */
async function inflate(
  env: Envelope,
  options: GrpcWebBodyOptions,
): Promise<Uint8Array> {
  try {
    return await options.compression!.decompress(
      env.data,
      options.maxMessageBytes,
    );
  } catch (e) {
    const code = (e as { code?: unknown }).code === Code.RESOURCE_EXHAUSTED
      ? Code.RESOURCE_EXHAUSTED
      : Code.INVALID_ARGUMENT;
    throw new StatusError(
      code,
      `malformed gRPC-Web request: ${(e as Error).message}`,
    );
  }
}
