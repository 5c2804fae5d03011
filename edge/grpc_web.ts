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
import {
  ACCEPTED_ENCODINGS,
  COMPRESS_MIN_BYTES,
  negotiateGrpcWeb,
} from "./compression.ts";
import { forwardableResponseHeaders, requestMetadata } from "./metadata.ts";
import { readGrpcWebBody, readSmallGrpcWebRequest } from "./grpc_web_body.ts";
import type { CallObserver } from "./ops/calls.ts";
import { ClientWatch } from "./client_watch.ts";
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

/** The status as header pairs: HTTP headers (trailers-only) or trailer frame. */
function statusHeaders(s: UpstreamStatus): [string, string][] {
  const out: [string, string][] = [["grpc-status", String(s.code)]];
  if (s.message) out.push(["grpc-message", encodeGrpcMessage(s.message)]);
  return [...out, ...forwardableResponseHeaders(s.trailers)];
}

/** Options of {@linkcode createGrpcWebHandler}. */
export interface GrpcWebHandlerOptions {
  maxMessageBytes: number;
  /** Records each call (metrics, log line); none when absent. */
  calls?: CallObserver;
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
  return async function handleGrpcWeb(
    request: Request,
    extraHeaders: readonly [string, string][] = [],
    pathname?: string,
    // The content-type header when the caller has read it already.
    contentTypeHeader?: string,
  ): Promise<Response> {
    const type = grpcWebContentType(
      contentTypeHeader ?? request.headers.get("content-type"),
    );
    if (!type) {
      return new Response("unsupported content type\n", { status: 415 });
    }
    if (request.method !== "POST") {
      return new Response("gRPC-Web needs POST\n", {
        status: 405,
        headers: { allow: "POST" },
      });
    }
    const contentType = type.text
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
      body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null,
    ) =>
      new Response(body, {
        status: 200,
        headers: [
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
    const small = readSmallGrpcWebRequest(request, bodyOptions);
    let requests: RequestMessages;
    if (small === undefined) {
      requests = readGrpcWebBody(request.body, bodyOptions);
    } else {
      const readFrom = deadlineMs === undefined ? 0 : performance.now();
      try {
        requests = await small;
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
    const early = await Promise.race([call.status, Promise.resolve(undefined)]);
    if (early !== undefined) {
      first = await nextBatch();
      if (first === undefined && Object.keys(headers).length === 0) {
        record?.end(early.code);
        return respond(statusHeaders(early), null);
      }
      // The whole answer is here (the usual unary case): one buffer body
      // costs far less than a ReadableStream pulled frame by frame.
      const frames: Uint8Array[] = [];
      for (let batch = first; batch; batch = await nextBatch()) {
        frames.push(
          frame(zip ? await compressed(batch, zip) : envelopes(batch)),
        );
      }
      frames.push(frame(encodeGrpcWebTrailer(statusHeaders(early))));
      const body = concat(frames);
      if (record) {
        record.bytesOut = body.byteLength;
        record.end(early.code);
      }
      return respond(forwardableResponseHeaders(headers), body);
    }

    function frame(bytes: Uint8Array): Uint8Array {
      return type!.text ? encoder.encode(encodeBase64(bytes)) : bytes;
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
      const last = frame(encodeGrpcWebTrailer(statusHeaders(status)));
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
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
