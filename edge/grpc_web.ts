/**
 * The gRPC-Web handler: browser gRPC-Web (binary or base64 text) in, one
 * upstream gRPC call out, with the status written as a trailer frame.
 *
 * Messages are forwarded as bytes; nothing is decoded. A trailers-only
 * upstream answer (an error before any response header) becomes a
 * headers-only HTTP response, the form gRPC-Web clients expect.
 *
 * @module
 */
import {
  encodeBase64,
  encodeEnvelope,
  encodeGrpcMessage,
  encodeGrpcWebTrailer,
  ENVELOPE_HEADER_BYTES,
  FLAG_COMPRESSED,
  parseGrpcTimeout,
  practicalTimeout,
  writeEnvelopeHeader,
} from "../protocol/mod.ts";
import type { Compression } from "@connectrpc/connect/protocol";
import { concatBytes } from "../protocol/bytes.ts";
import { ACCEPT_POST_GRPC_WEB } from "./accept_post.ts";
import {
  ACCEPTED_ENCODINGS,
  COMPRESS_MIN_BYTES,
  negotiateGrpcWeb,
} from "./compression.ts";
import { forwardableResponseHeaders, requestMetadata } from "./metadata.ts";
import {
  readGrpcWebBody,
  readSmallGrpcWebRequest,
  readWholeGrpcWebRequest,
} from "./grpc_web_body.ts";
import type { CallObserver } from "./ops/calls.ts";
import { ClientWatch } from "./client_watch.ts";
import { bidiBody, readWithin } from "./http1.ts";
import { Code, statusFromRequestError } from "./upstream/status.ts";
import type {
  MessageSource,
  RequestMessages,
  Upstream,
  UpstreamStatus,
} from "./upstream/types.ts";

const encoder = new TextEncoder();

/** Parses a gRPC-Web content type; undefined for anything else (415). */
export function grpcWebContentType(
  value: string | null,
): { text: boolean } | undefined {
  const base = (value ?? "").split(";")[0].trim().toLowerCase();
  switch (base) {
    case "application/grpc-web":
    case "application/grpc-web+proto":
      return { text: false };
    case "application/grpc-web-text":
    case "application/grpc-web-text+proto":
      return { text: true };
  }
  return undefined;
}

/**
 * Whether the client asks for a base64 answer: an `Accept` naming
 * `application/grpc-web-text` (or `+proto`), as grpc-web's text mode sends.
 */
export function acceptsGrpcWebText(headers: Headers): boolean {
  const accept = headers.get("accept");
  return accept !== null &&
    accept.toLowerCase().includes("application/grpc-web-text");
}

/** The status as header pairs: HTTP headers (trailers-only) or trailer frame. */
function statusHeaders(s: UpstreamStatus): [string, string][] {
  const out: [string, string][] = [["grpc-status", String(s.code)]];
  if (s.message) out.push(["grpc-message", encodeGrpcMessage(s.message)]);
  for (const pair of forwardableResponseHeaders(s.trailers)) out.push(pair);
  return out;
}

/** A trailer frame as bytes, and as base64 for grpc-web-text. */
interface TrailerFrame {
  readonly bytes: Uint8Array<ArrayBuffer>;
  base64?: string;
}

/** Distinct OK messages whose trailer frame is kept (normally one: "OK"). */
const TRAILER_CACHE_SIZE = 8;

/**
 * The trailer frame of a status. Every successful call of a core answers
 * the same trailer (grpc-status 0, the same grpc-message, no metadata), so
 * that frame is built once and reused instead of encoded per call.
 */
function trailerCache(): (s: UpstreamStatus) => TrailerFrame {
  const ok = new Map<string, TrailerFrame>();
  return (s) => {
    if (s.code !== 0 || !isEmpty(s.trailers)) {
      return { bytes: encodeGrpcWebTrailer(statusHeaders(s)) };
    }
    let frame = ok.get(s.message);
    if (frame === undefined) {
      frame = { bytes: encodeGrpcWebTrailer(statusHeaders(s)) };
      if (ok.size < TRAILER_CACHE_SIZE) ok.set(s.message, frame);
    }
    return frame;
  };
}

function isEmpty(record: Record<string, string>): boolean {
  for (const _ in record) return false;
  return true;
}

const NO_HEADERS: readonly [string, string][] = [];

/** Options of {@linkcode createGrpcWebHandler}. */
export interface GrpcWebHandlerOptions {
  maxMessageBytes: number;
  /** Records each call (metrics, log line); none when absent. */
  calls?: CallObserver;
  /**
   * Paths of the bidi methods whose request body is checked before the call
   * (edge/http1.ts); none when absent.
   */
  bidiPaths?: ReadonlySet<string>;
}

/** Creates the handler for `POST /<service>/<method>` with a gRPC-Web body. */
export function createGrpcWebHandler(
  upstream: Upstream,
  options: GrpcWebHandlerOptions,
): (
  request: Request,
  extraHeaders?: readonly [string, string][],
  pathname?: string,
  contentType?: string,
) => Promise<Response> {
  const clientWatch = new ClientWatch();
  const trailerOf = trailerCache();
  const bidiPaths = options.bidiPaths;
  // The response headers of a call that adds none of its own, per list of
  // extra (CORS) headers: built once, not per call.
  const plainHeaders = new WeakMap<
    readonly [string, string][],
    { binary: [string, string][]; text: [string, string][] }
  >();
  const baseHeaders = (
    extra: readonly [string, string][],
    text: boolean,
  ): [string, string][] => {
    let both = plainHeaders.get(extra);
    if (both === undefined) {
      both = {
        binary: [["content-type", "application/grpc-web+proto"], ...extra],
        text: [["content-type", "application/grpc-web-text+proto"], ...extra],
      };
      plainHeaders.set(extra, both);
    }
    return text ? both.text : both.binary;
  };
  return async function handleGrpcWeb(
    request: Request,
    extraHeaders: readonly [string, string][] = NO_HEADERS,
    pathname?: string,
    // The content-type header when the caller has read it already.
    contentTypeHeader?: string,
  ): Promise<Response> {
    const type = grpcWebContentType(
      contentTypeHeader ?? request.headers.get("content-type"),
    );
    // The caller's extra (CORS) headers go on these answers too: without
    // them a browser reports a network error instead of the status.
    if (!type) {
      return new Response("unsupported content type\n", {
        status: 415,
        headers: [...extraHeaders, ["accept-post", ACCEPT_POST_GRPC_WEB]],
      });
    }
    if (request.method !== "POST") {
      return new Response("gRPC-Web needs POST\n", {
        status: 405,
        headers: [...extraHeaders, ["allow", "POST"]],
      });
    }
    // The answer is base64 when the request is, or when the client asks
    // for it with `Accept: application/grpc-web-text` (PROTOCOL-WEB.md,
    // "Text-encoded (response) streams"), whatever its request's encoding.
    // A binary request pays one header read for it (~1 µs).
    const textOut = type.text || acceptsGrpcWebText(request.headers);
    const contentType = textOut
      ? "application/grpc-web-text+proto"
      : "application/grpc-web+proto";
    const path = pathname ?? new URL(request.url).pathname;
    const record = options.calls?.start(
      type.text ? "grpc-web-text" : "grpc-web",
      path,
    );
    const compression = negotiateGrpcWeb(
      request.headers.get("grpc-encoding"),
      request.headers.get("grpc-accept-encoding"),
    );
    const zip = compression.response;
    const respond = (
      headers: [string, string][],
      body:
        | ReadableStream<Uint8Array>
        | Uint8Array<ArrayBuffer>
        | string
        | null,
    ) =>
      new Response(body, {
        status: 200,
        headers: headers.length === 0 && !zip
          ? baseHeaders(extraHeaders, textOut)
          : [
            ["content-type", contentType],
            ...extraHeaders,
            ...(zip ? [["grpc-encoding", zip.name] as [string, string]] : []),
            ...headers,
          ],
      });
    /** A status-only answer before any upstream call. */
    const refuse = (
      code: number,
      message: string,
      extra: [string, string][] = [],
    ) => {
      record?.end(code);
      return respond(
        [...statusHeaders({ code, message, trailers: {} }), ...extra],
        null,
      );
    };

    // A bidi call's body (edge/http1.ts): a chunked one is refused before
    // it is touched, one of declared length read whole first.
    let wholeFirst = false;
    if (bidiPaths?.has(path)) {
      const body = bidiBody(request, options.maxMessageBytes, type.text);
      if (body.take === "refused") return refuse(body.code, body.message);
      wholeFirst = body.take === "whole";
    }
    if (compression.unsupported !== undefined) {
      return refuse(
        Code.UNIMPLEMENTED,
        `grpc-encoding ${
          JSON.stringify(compression.unsupported)
        } is not supported; use ${ACCEPTED_ENCODINGS} or identity`,
        [["grpc-accept-encoding", ACCEPTED_ENCODINGS]],
      );
    }
    const rawTimeout = request.headers.get("grpc-timeout");
    const timeoutMs = parseGrpcTimeout(rawTimeout);
    if (rawTimeout !== null && timeoutMs === undefined) {
      return refuse(Code.INVALID_ARGUMENT, "malformed grpc-timeout");
    }

    const bodyOptions = {
      text: type.text,
      maxMessageBytes: options.maxMessageBytes,
      compression: compression.request,
      counter: record,
    };
    // A small body (a unary call) is read whole before the call: the
    // upstream gets the list of messages, a malformed body gets its status
    // without reaching the core.
    // The deadline counts from here: time spent reading it is taken off.
    let deadlineMs = practicalTimeout(timeoutMs);
    const small = wholeFirst
      ? readWholeGrpcWebRequest(request, bodyOptions)
      : readSmallGrpcWebRequest(request, bodyOptions);
    let requests: RequestMessages;
    if (small === undefined) {
      requests = readGrpcWebBody(request.body, bodyOptions);
    } else {
      const readFrom = deadlineMs === undefined ? 0 : performance.now();
      try {
        requests = await readWithin(small, deadlineMs);
      } catch (e) {
        const s = statusFromRequestError(e);
        return refuse(s.code, s.message);
      }
      if (deadlineMs !== undefined) {
        deadlineMs -= performance.now() - readFrom;
        if (deadlineMs <= 0) {
          return refuse(Code.DEADLINE_EXCEEDED, "deadline exceeded");
        }
      }
    }

    // One signal for the call: the browser going away (noticed only for
    // calls that last: edge/client_watch.ts) or the body being cancelled.
    const ctl = new AbortController();
    const watched = clientWatch.add(request, () => ctl.abort());
    const call = upstream.call(
      path,
      requests,
      {
        metadata: requestMetadata(request.headers),
        signal: ctl.signal,
        timeoutMs: deadlineMs,
      },
    );
    call.status.then(() => clientWatch.remove(watched));

    const headers = await call.headers;
    const nextBatch = batches(call.messages);
    // A status already settled when headers resolve means the queue is
    // complete; with no message and no header, answer trailers-only.
    let first: Uint8Array[] | undefined;
    const early = call.statusNow
      ? call.statusNow()
      : await Promise.race([call.status, Promise.resolve(undefined)]);
    if (early !== undefined) {
      first = await nextBatch();
      if (first === undefined && isEmpty(headers)) {
        record?.end(early.code);
        return respond(statusHeaders(early), null);
      }
      // The whole answer is here (the usual unary case): one buffer body
      // costs far less than a ReadableStream pulled frame by frame.
      const trailer = trailerOf(early);
      let body: Uint8Array<ArrayBuffer> | string;
      if (zip) {
        const frames: Uint8Array[] = [];
        for (let batch = first; batch; batch = await nextBatch()) {
          frames.push(frame(await compressed(batch, zip)));
        }
        frames.push(frame(trailer.bytes));
        body = concatBytes(frames);
      } else if (textOut) {
        // A string body: Deno writes its (ASCII) bytes without a copy here.
        let text = "";
        for (let batch = first; batch; batch = await nextBatch()) {
          text += encodeBase64(envelopes(batch));
        }
        body = text + (trailer.base64 ??= encodeBase64(trailer.bytes));
      } else {
        const all: Uint8Array[][] = [];
        for (let batch = first; batch; batch = await nextBatch()) {
          all.push(batch);
        }
        body = envelopesThen(all, trailer.bytes);
      }
      if (record) {
        record.bytesOut = body.length;
        record.end(early.code);
      }
      return respond(forwardableResponseHeaders(headers), body);
    }

    function frame(bytes: Uint8Array): Uint8Array {
      return textOut ? encoder.encode(encodeBase64(bytes)) : bytes;
    }
    // Every message that arrived while the last chunk was being written goes
    // out as one chunk: one write to the browser instead of one per message.
    async function pull(
      controller: ReadableStreamDefaultController<Uint8Array>,
    ): Promise<void> {
      const batch = first ?? await nextBatch();
      first = undefined;
      if (batch !== undefined) {
        const chunk = frame(
          zip ? await compressed(batch, zip) : envelopes(batch),
        );
        if (record) record.bytesOut += chunk.byteLength;
        controller.enqueue(chunk);
        return;
      }
      const status = await call.status;
      const last = frame(trailerOf(status).bytes);
      controller.enqueue(last);
      controller.close();
      if (record) {
        record.bytesOut += last.byteLength;
        record.end(status.code);
      }
    }
    const body = new ReadableStream<Uint8Array>({
      // A failure inside pull errors the body: the call ends INTERNAL.
      pull: record
        ? (controller) =>
          pull(controller).catch((err) => {
            record.end(Code.INTERNAL);
            throw err;
          })
        : pull,
      cancel() {
        ctl.abort();
        record?.end(Code.CANCELLED);
      },
    }, { highWaterMark: 0 });

    return respond(forwardableResponseHeaders(headers), body);
  };
}

/** Batches of messages: the source's own, or one per iterator step. */
function batches(
  source: MessageSource,
): () => Promise<Uint8Array[] | undefined> {
  if (source.nextBatch) return () => source.nextBatch!();
  const it = source[Symbol.asyncIterator]();
  return async () => {
    const r = await it.next();
    return r.done ? undefined : [r.value];
  };
}

/**
 * Every message of `batches` framed as an envelope, then `last`, in one
 * buffer: the same bytes as framing each batch and joining them, with one
 * allocation and one copy of each message.
 */
function envelopesThen(
  batches: Uint8Array[][],
  last: Uint8Array,
): Uint8Array<ArrayBuffer> {
  let size = last.byteLength;
  for (const batch of batches) {
    for (const m of batch) size += ENVELOPE_HEADER_BYTES + m.byteLength;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const batch of batches) {
    for (const m of batch) {
      writeEnvelopeHeader(out, at, 0, m.byteLength);
      out.set(m, at + ENVELOPE_HEADER_BYTES);
      at += ENVELOPE_HEADER_BYTES + m.byteLength;
    }
  }
  out.set(last, at);
  return out;
}

/** Messages framed as envelopes, back to back in one buffer. */
function envelopes(messages: Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (messages.length === 1) return encodeEnvelope(0, messages[0]);
  let size = 0;
  for (const m of messages) size += ENVELOPE_HEADER_BYTES + m.byteLength;
  const out = new Uint8Array(size);
  let at = 0;
  for (const m of messages) {
    writeEnvelopeHeader(out, at, 0, m.byteLength);
    out.set(m, at + ENVELOPE_HEADER_BYTES);
    at += ENVELOPE_HEADER_BYTES + m.byteLength;
  }
  return out;
}

/**
 * Messages framed as envelopes, each gzipped (flag 1) when it is big enough
 * to gain from it; small ones go as they are (flag 0), which gRPC allows
 * message by message.
 */
async function compressed(
  messages: Uint8Array[],
  compression: Compression,
): Promise<Uint8Array<ArrayBuffer>> {
  const parts: Uint8Array[] = [];
  for (const m of messages) {
    parts.push(
      m.byteLength < COMPRESS_MIN_BYTES
        ? encodeEnvelope(0, m)
        : encodeEnvelope(FLAG_COMPRESSED, await compression.compress(m)),
    );
  }
  return concatBytes(parts);
}
