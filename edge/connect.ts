/**
 * The Connect protocol side of the edge: connect-es's router does the
 * protocol (unary JSON/binary, streaming envelopes, end-stream, GET, error
 * JSON), and a generic service implementation runs every method as an
 * upstream call.
 *
 * This is the one place the edge decodes and re-encodes protobuf, because
 * Connect JSON needs the message types; gRPC-Web never pays that cost.
 *
 * @module
 */
import {
  type DescMethod,
  type DescService,
  fromBinary,
  fromJsonString,
  type MessageShape,
  toBinary,
  toJsonString,
} from "@bufbuild/protobuf";
import {
  type Code,
  Code as ConnectCode,
  ConnectError,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import {
  compressionNegotiate,
  mergeNonProtocolHeaders,
  type UniversalServerRequest,
  type UniversalServerResponse,
  universalServerResponseToFetch,
} from "@connectrpc/connect/protocol";
import {
  codeFromHttpStatus,
  codeFromString,
  codeToHttpStatus,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { concatBytes } from "../protocol/bytes.ts";
import { acceptPostFor } from "./accept_post.ts";
import {
  connectErrorAnswer,
  connectErrorParts,
  isConnectStreaming,
} from "../protocol/connect_error_answer.ts";
import { COMPRESS_MIN_BYTES, COMPRESSIONS } from "./compression.ts";
import { forwardableResponseHeaders, requestMetadata } from "./metadata.ts";
import type { CallObserver, CallRecord } from "./ops/calls.ts";
import { ClientWatch } from "./client_watch.ts";
import { bidiBody, declaredLength, readWithin } from "./http1.ts";
import {
  ENVELOPE_HEADER_BYTES,
  FLAG_END_STREAM,
  parseConnectEndStream,
  practicalTimeout,
  readEnvelopeLength,
} from "../protocol/mod.ts";
import { decodeStatusDetails } from "./status_details.ts";
import { Code as GrpcCode, StatusError } from "./upstream/status.ts";
import type {
  RequestMessages,
  Upstream,
  UpstreamCall,
  UpstreamStatus,
} from "./upstream/types.ts";

type AnyMessage = MessageShape<DescMethod["input"]>;

/** The call's record, handed to the implementation through the context. */
const RECORD = createContextKey<CallRecord | undefined>(undefined);

async function* encodeEach(
  method: DescMethod,
  inputs: AsyncIterable<AnyMessage>,
) {
  for await (const m of inputs) yield toBinary(method.input, m);
}

async function* one(bytes: Uint8Array) {
  yield bytes;
}

function toConnectError(s: UpstreamStatus): ConnectError {
  const metadata = new Headers();
  for (const [k, v] of forwardableResponseHeaders(s.trailers)) {
    // Details travel as Connect error details, decoded below.
    if (k !== "grpc-status-details-bin") metadata.set(k, v);
  }
  const err = new ConnectError(s.message, s.code as Code, metadata);
  err.details.push(
    ...decodeStatusDetails(s.trailers["grpc-status-details-bin"]),
  );
  return err;
}

/**
 * Runs one method as an upstream call with the context's metadata and
 * deadline. The router aborts `ctx.signal` for its own deadline too; that
 * must reach the client as deadline_exceeded, not as canceled.
 */
function start(
  upstream: Upstream,
  method: DescMethod,
  // Known in full (unary, server streaming): written at once, and a call
  // the core never processed can go to another core (balancer.ts).
  requests: RequestMessages,
  ctx: HandlerContext,
) {
  const ctl = new AbortController();
  const onAbort = () => {
    const reason = ctx.signal.reason;
    ctl.abort(
      reason instanceof ConnectError &&
        reason.code === ConnectCode.DeadlineExceeded
        ? new StatusError(ConnectCode.DeadlineExceeded, "deadline exceeded")
        : reason,
    );
  };
  if (ctx.signal.aborted) onAbort();
  else ctx.signal.addEventListener("abort", onAbort, { once: true });
  const call = upstream.call(
    `/${method.parent.typeName}/${method.name}`,
    requests,
    {
      metadata: requestMetadata(ctx.requestHeader),
      signal: ctl.signal,
      timeoutMs: ctx.timeoutMs(),
    },
  );
  const record = ctx.values.get(RECORD);
  call.status.then((s) => {
    ctx.signal.removeEventListener("abort", onAbort);
    if (record) record.code = s.code;
  });
  return call;
}

async function copyHeaders(call: UpstreamCall, ctx: HandlerContext) {
  for (const [k, v] of forwardableResponseHeaders(await call.headers)) {
    ctx.responseHeader.set(k, v);
  }
}

async function finish(call: UpstreamCall, ctx: HandlerContext): Promise<void> {
  const status = await call.status;
  if (status.code !== GrpcCode.OK) throw toConnectError(status);
  for (const [k, v] of forwardableResponseHeaders(status.trailers)) {
    ctx.responseTrailer.set(k, v);
  }
}

/** A unary call whose upstream answered with `count` messages, not one. */
function notOneResponse(count: number): ConnectError {
  return new ConnectError(
    `upstream sent ${count} responses to a unary call`,
    ConnectCode.Unimplemented,
  );
}

function implement(upstream: Upstream, method: DescMethod) {
  const decode = (bytes: Uint8Array) => fromBinary(method.output, bytes);
  async function unaryResult(call: UpstreamCall, ctx: HandlerContext) {
    await copyHeaders(call, ctx);
    const out: Uint8Array[] = [];
    for await (const m of call.messages) out.push(m);
    await finish(call, ctx);
    if (out.length !== 1) {
      throw notOneResponse(out.length);
    }
    return decode(out[0]);
  }
  async function* streamResult(call: UpstreamCall, ctx: HandlerContext) {
    await copyHeaders(call, ctx);
    for await (const m of call.messages) yield decode(m);
    await finish(call, ctx);
  }
  switch (method.methodKind) {
    case "unary":
      return (req: AnyMessage, ctx: HandlerContext) =>
        unaryResult(
          start(upstream, method, [toBinary(method.input, req)], ctx),
          ctx,
        );
    case "server_streaming":
      return (req: AnyMessage, ctx: HandlerContext) =>
        streamResult(
          start(upstream, method, [toBinary(method.input, req)], ctx),
          ctx,
        );
    case "client_streaming":
      return (reqs: AsyncIterable<AnyMessage>, ctx: HandlerContext) =>
        unaryResult(
          start(upstream, method, encodeEach(method, reqs), ctx),
          ctx,
        );
    case "bidi_streaming":
      return (reqs: AsyncIterable<AnyMessage>, ctx: HandlerContext) =>
        streamResult(
          start(upstream, method, encodeEach(method, reqs), ctx),
          ctx,
        );
  }
}

/**
 * JSON must be UTF-8 (RFC 8259): connect-es's default decoder turns invalid
 * bytes into U+FFFD and accepts the request; a fatal one throws, which
 * connect-es answers invalid_argument. The router hands `jsonOptions` to
 * its JSON serialization, which takes a `textDecoder`, though the router's
 * option type does not name it (tests/edge_bad_input_test.ts pins it).
 */
const STRICT_JSON = {
  ignoreUnknownFields: true,
  textDecoder: new TextDecoder("utf-8", { fatal: true }),
};

/** Options of {@linkcode createConnectHandler}. */
export interface ConnectHandlerOptions {
  services: readonly DescService[];
  maxMessageBytes: number;
  /** Records each call (metrics, log line); none when absent. */
  calls?: CallObserver;
  /**
   * Paths of the bidi methods whose request body is checked before the call
   * (edge/http1.ts); none when absent.
   */
  bidiPaths?: ReadonlySet<string>;
}

/**
 * Creates a fetch-style handler for the Connect protocol on the services'
 * paths; it answers undefined for paths that belong to no method.
 */
export function createConnectHandler(
  upstream: Upstream,
  options: ConnectHandlerOptions,
): (
  request: Request,
  path?: string,
  extraHeaders?: readonly [string, string][],
) => Promise<Response> | undefined {
  const router = createConnectRouter({
    connect: true,
    grpc: false,
    grpcWeb: false,
    readMaxBytes: options.maxMessageBytes,
    writeMaxBytes: options.maxMessageBytes,
    // curl and hand-written clients rarely send connect-protocol-version.
    requireConnectProtocolHeader: false,
    jsonOptions: STRICT_JSON,
    acceptCompression: [...COMPRESSIONS],
    compressMinBytes: COMPRESS_MIN_BYTES,
  });
  for (const service of options.services) {
    for (const method of service.methods) {
      router.rpc(method, implement(upstream, method) as never);
    }
  }
  const byPath = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const unary = new Map<string, DescMethod>();
  for (const service of options.services) {
    for (const method of service.methods) {
      if (method.methodKind === "unary") {
        unary.set(`/${service.typeName}/${method.name}`, method);
      }
    }
  }
  const calls = options.calls;
  const bidiPaths = options.bidiPaths;
  const clientWatch = new ClientWatch();
  const routed = (
    handler: UniversalHandler,
    request: Request,
    body?: Uint8Array,
    record?: CallRecord,
  ): Promise<Response> => {
    // The call ends when the client goes away: when Deno aborts
    // `request.signal`, or when it cancels the response body, which it
    // sometimes does without ever aborting the signal; and the request body
    // is let go of once the response is over (see endWithBody()).
    const gone = new AbortController();
    const signal = AbortSignal.any([request.signal, gone.signal]);
    const kind = handler.method.methodKind;
    const universal = withPracticalTimeout({
      httpVersion: "",
      method: request.method,
      url: request.url,
      header: request.headers,
      body: body === undefined
        ? requestBody(
          request.body,
          signal,
          // A unary or server-streaming call's one message is read before
          // the call starts, where the router's deadline does not reach:
          // the read is bounded by the deadline here.
          kind === "unary" || kind === "server_streaming"
            ? connectTimeoutMs(request)
            : undefined,
        )
        // A body already read goes in again as the one chunk it was.
        : one(body),
      signal,
    });
    const failed = (err: unknown): never => {
      gone.abort();
      throw err;
    };
    if (!record) {
      return handler(universal).then((res) =>
        universalServerResponseToFetch(
          endWithBody(withErrorBody(res, request, kind === "unary"), gone),
        ), failed);
    }
    return handler({
      ...universal,
      body: body !== undefined
        ? universal.body
        : countIn(universal.body as AsyncIterable<Uint8Array>, record),
      contextValues: createContextValues().set(RECORD, record),
    }).then(
      async (res) =>
        universalServerResponseToFetch(
          await observed(
            endWithBody(withErrorBody(res, request, kind === "unary"), gone),
            record,
            isConnectStreaming(request.headers.get("content-type")),
          ),
        ),
      (err) => {
        gone.abort();
        return failedInternal(record)(err);
      },
    );
  };
  // `path`: the request's pathname when the caller has it already;
  // `extraHeaders` (CORS) are set on every answer.
  return (
    request,
    path = new URL(request.url).pathname,
    extraHeaders = NO_HEADERS,
  ) => {
    const handler = byPath.get(path);
    if (!handler) return undefined;
    const method = unary.get(path);
    const record = calls?.start("connect", path);
    // The header may be left out (curl), but a version other than "1" is
    // no Connect request this edge can read (the protocol's grammar has
    // only "1"; connect-go refuses any other). One header read (~1 µs).
    const version = request.headers.get("connect-protocol-version");
    if (version !== null && version !== "1") {
      record?.end(GrpcCode.INVALID_ARGUMENT);
      return Promise.resolve(connectErrorAnswer(
        request,
        400,
        "invalid_argument",
        `connect-protocol-version must be "1": got ${JSON.stringify(version)}`,
        [...extraHeaders],
      ));
    }
    const codec = method === undefined
      ? undefined
      : passThrough(request, options.maxMessageBytes);
    const withExtra = (res: Response) => {
      for (const [name, value] of extraHeaders) res.headers.set(name, value);
      return res;
    };
    // Only a streaming content type fits a bidi method: any other gets the
    // router's 415 (unimplemented), read before any of the body is, and
    // not this check's 505 or 413 (a Connect unary error's HTTP status
    // must be its code's: 501, 429).
    if (
      bidiPaths?.has(path) &&
      isConnectStreaming(request.headers.get("content-type"))
    ) {
      // A bidi call's body (edge/http1.ts): one of declared length is read
      // whole first and goes in as one chunk; a chunked one gets
      // connect-es's answer to bidi over HTTP/1.1 (its
      // protocolNegotiatingHandler: 505) with the reason in the error,
      // before the body is touched.
      const body = bidiBody(request, options.maxMessageBytes);
      if (body.take === "whole") {
        // The deadline counts from here: the read is bounded by it, and
        // the call gets what is left of it.
        const timeoutMs = connectTimeoutMs(request);
        const readFrom = performance.now();
        const deadlinePassed = () => {
          record?.end(GrpcCode.DEADLINE_EXCEEDED);
          return connectErrorAnswer(
            request,
            codeToHttpStatus(ConnectCode.DeadlineExceeded),
            "deadline_exceeded",
            "deadline exceeded while reading the request",
          );
        };
        const answer = readWithin(request.bytes(), timeoutMs).then((bytes) => {
          if (record) record.bytesIn += bytes.byteLength;
          if (timeoutMs === undefined) {
            return routed(handler, request, bytes, record);
          }
          const left = Math.floor(timeoutMs - (performance.now() - readFrom));
          if (left <= 0) return deadlinePassed();
          const header = new Headers(request.headers);
          header.set("connect-timeout-ms", String(left));
          const rest = new Request(request.url, {
            method: request.method,
            headers: header,
            signal: request.signal,
          });
          return routed(handler, rest, bytes, record);
        }, (err) => {
          if (err instanceof StatusError) return deadlinePassed();
          // The client left before its body ended: nobody reads an answer.
          record?.end(GrpcCode.CANCELLED);
          return new Response(null, { status: 499 });
        });
        return extraHeaders.length === 0 ? answer : answer.then(withExtra);
      }
      if (body.take === "refused") {
        record?.end(body.code);
        return Promise.resolve(connectErrorAnswer(
          request,
          body.code === GrpcCode.UNIMPLEMENTED ? 505 : 413,
          body.code === GrpcCode.UNIMPLEMENTED
            ? "unimplemented"
            : "resource_exhausted",
          body.message,
          [...extraHeaders],
        ));
      }
    }
    if (method !== undefined && codec !== undefined) {
      const answer = forwardUnary(
        upstream,
        method,
        codec,
        options.maxMessageBytes,
        request,
        path,
        record,
        clientWatch,
        extraHeaders,
        (body) => {
          const answer = routed(handler, request, body, record);
          return extraHeaders.length === 0 ? answer : answer.then(withExtra);
        },
      );
      return record ? answer.catch(failedInternal(record)) : answer;
    }
    const answer = routed(handler, request, undefined, record);
    return extraHeaders.length === 0 ? answer : answer.then(withExtra);
  };
}

const NO_HEADERS: readonly [string, string][] = [];

type UniversalHandler = ReturnType<
  typeof createConnectRouter
>["handlers"][number];

/**
 * How a pass-through call's message is read and written: the request turned
 * into the protobuf binary the core takes, the core's answer into the
 * client's format.
 */
interface PassThroughCodec {
  readonly contentType: "application/proto" | "application/json";
  /** The request as protobuf binary; throws for a malformed one. */
  request(method: DescMethod, bytes: Uint8Array): Uint8Array;
  /**
   * The core's answer for the client; throws what the router's
   * implementation and serializer would (see {@linkcode forwardUnary}).
   */
  response(
    method: DescMethod,
    bytes: Uint8Array,
    maxMessageBytes: number,
  ): Uint8Array;
}

const BINARY: PassThroughCodec = {
  contentType: "application/proto",
  request(method, bytes) {
    // Parsed once only to refuse what the router would refuse.
    fromBinary(method.input, bytes);
    return bytes;
  },
  response: (_method, bytes) => bytes,
};

const jsonText = new TextEncoder();

const JSON_CODEC: PassThroughCodec = {
  contentType: "application/json",
  request(method, bytes) {
    const message = fromJsonString(
      method.input,
      STRICT_JSON.textDecoder.decode(bytes),
      STRICT_JSON,
    );
    return toBinary(method.input, message);
  },
  response(method, bytes, maxMessageBytes) {
    // A malformed answer throws as the implementation's decode does.
    const message = fromBinary(method.output, bytes);
    let json: Uint8Array;
    try {
      json = jsonText.encode(toJsonString(method.output, message));
    } catch (e) {
      throw ConnectError.from(e, ConnectCode.Internal);
    }
    // connect-es's writeMaxBytes check (its assertWriteMaxBytes, which the
    // package does not export), with the same message.
    if (json.byteLength > maxMessageBytes) {
      throw new ConnectError(
        `message size ${json.byteLength} is larger than configured writeMaxBytes ${maxMessageBytes}`,
        ConnectCode.ResourceExhausted,
      );
    }
    return json;
  },
};

/**
 * The codec of a request that may take {@linkcode forwardUnary}: a binary or
 * JSON unary POST with a declared, bounded length, no request compression
 * and no timeout (the router keeps handling those, and every other form);
 * undefined for any other.
 */
function passThrough(
  request: Request,
  maxMessageBytes: number,
): PassThroughCodec | undefined {
  if (request.method !== "POST") return undefined;
  const headers = request.headers;
  const type = headers.get("content-type");
  const codec = type === "application/proto"
    ? BINARY
    : type === "application/json"
    ? JSON_CODEC
    : undefined;
  if (codec === undefined) return undefined;
  const length = declaredLength(request);
  if (length === undefined || length > maxMessageBytes) return undefined;
  return headers.get("content-encoding") === null &&
      headers.get("connect-timeout-ms") === null
    ? codec
    : undefined;
}

/**
 * A Connect unary call forwarded without connect-es's router. Binary: the
 * request's body is the same protobuf message a gRPC call carries, and so
 * is the answer, so neither is re-encoded (the router decodes and re-encodes
 * both). JSON: converted once each way, as the router does, without its
 * universal request and response, context and async iterables.
 * The request is parsed once, so a malformed one gets the router's own
 * answer (`fallback`), and every answer (success, error JSON, headers,
 * `trailer-` headers, compression) is built as the router builds it;
 * tests/edge_connect_passthrough_test.ts compares the two byte for byte.
 */
async function forwardUnary(
  upstream: Upstream,
  method: DescMethod,
  codec: PassThroughCodec,
  maxMessageBytes: number,
  request: Request,
  path: string,
  record: CallRecord | undefined,
  clientWatch: ClientWatch,
  extraHeaders: readonly [string, string][],
  fallback: (body: Uint8Array) => Promise<Response>,
): Promise<Response> {
  let bytes: Uint8Array;
  try {
    bytes = await request.bytes();
  } catch (err) {
    // The body broke off: the client went away before its request was sent.
    record?.end(GrpcCode.CANCELLED);
    throw err;
  }
  if (record) record.bytesIn += bytes.byteLength;
  let message: Uint8Array;
  try {
    message = codec.request(method, bytes);
  } catch {
    return fallback(bytes);
  }
  const ctl = new AbortController();
  const watched = clientWatch.add(request, () => ctl.abort());
  const call = upstream.call(path, [message], {
    metadata: requestMetadata(request.headers),
    signal: ctl.signal,
    timeoutMs: undefined,
  });
  // Also when reading the answer throws, as grpc_web.ts does.
  call.status.then(() => clientWatch.remove(watched));
  const forwarded = forwardableResponseHeaders(await call.headers);
  const out: Uint8Array[] = [];
  for await (const m of call.messages) out.push(m);
  const status = await call.status;
  const answered = status.code === GrpcCode.OK && out.length === 1;
  let body: Uint8Array | undefined;
  let error: ConnectError | undefined;
  if (answered) {
    try {
      body = codec.response(method, out[0], maxMessageBytes);
    } catch (e) {
      // What the router makes of an implementation's throw.
      error = e instanceof ConnectError ? e : new ConnectError(
        "internal error",
        ConnectCode.Internal,
        undefined,
        undefined,
        e,
      );
    }
  } else {
    error = status.code !== GrpcCode.OK
      ? toConnectError(status)
      : notOneResponse(out.length);
  }
  const trailers = answered ? forwardableResponseHeaders(status.trailers) : [];
  if (
    body !== undefined && forwarded.length === 0 && trailers.length === 0 &&
    body.byteLength < COMPRESS_MIN_BYTES
  ) {
    // The usual answer (no metadata, too small to compress): its header
    // list is built at once, CORS included, so Deno takes it as it is.
    if (record) {
      record.bytesOut = body.byteLength;
      record.end(status.code);
    }
    return new Response(body as Uint8Array<ArrayBuffer>, {
      status: 200,
      headers: [
        ["content-type", codec.contentType],
        ["content-length", String(body.byteLength)],
        ...extraHeaders,
      ],
    });
  }
  const header = new Headers({ "content-type": codec.contentType });
  for (const [k, v] of forwarded) header.set(k, v);
  // The router's implementation sets the trailers before it decodes the
  // answer, so they are there when that fails too.
  for (const [k, v] of trailers) header.append(`trailer-${k}`, v);
  let httpStatus = 200;
  if (error !== undefined) {
    httpStatus = codeToHttpStatus(error.code);
    header.set("content-type", "application/json");
    mergeNonProtocolHeaders(header, error.metadata);
    // The router hands its JSON options over; none of them is a write option.
    body = errorToJsonBytes(error, {});
  }
  if (body === undefined) throw new Error("unreachable: no body and no error");
  if (body.byteLength >= COMPRESS_MIN_BYTES) {
    const zip = compressionNegotiate(
      [...COMPRESSIONS],
      null,
      request.headers.get("accept-encoding"),
      "Accept-Encoding",
    ).response;
    if (zip) {
      body = await zip.compress(body);
      header.set("content-encoding", zip.name);
    }
  }
  header.set("content-length", String(body.byteLength));
  for (const [name, value] of extraHeaders) header.set(name, value);
  if (record) {
    record.bytesOut = body.byteLength;
    // The code in the error body: the core's, or the edge's own when the
    // core's answer could not be passed on.
    record.end(error?.code ?? GrpcCode.OK);
  }
  return new Response(body as Uint8Array<ArrayBuffer>, {
    status: httpStatus,
    headers: header,
  });
}

/** A `connect-timeout-ms` value as the protocol has it: 1 to 10 digits. */
function wellFormedTimeout(raw: string | null): raw is string {
  return raw !== null && /^\d{1,10}$/.test(raw);
}

/** A request's `connect-timeout-ms` in ms; undefined for none, or one too far to count. */
function connectTimeoutMs(request: Request): number | undefined {
  const raw = request.headers.get("connect-timeout-ms");
  return wellFormedTimeout(raw) ? practicalTimeout(Number(raw)) : undefined;
}

/**
 * Drops a `connect-timeout-ms` beyond the timer's range (2^31 ms and up):
 * connect-es would arm a timer that overflows and ends the call at once
 * with deadline_exceeded; a deadline that far away means none.
 */
function withPracticalTimeout(
  request: UniversalServerRequest,
): UniversalServerRequest {
  const raw = request.header.get("connect-timeout-ms");
  if (!wellFormedTimeout(raw)) return request;
  if (practicalTimeout(Number(raw)) !== undefined) return request;
  const header = new Headers(request.header);
  header.delete("connect-timeout-ms");
  return { ...request, header };
}

/** The request body, counted into the record as it is read. */
async function* countIn(
  body: AsyncIterable<Uint8Array>,
  record: CallRecord,
): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    record.bytesIn += chunk.byteLength;
    yield chunk;
  }
}

/**
 * A rejection handler that ends `record` INTERNAL and rethrows: the app
 * answers the call 500 (edge/app.ts), which the client reads as INTERNAL.
 */
function failedInternal(record: CallRecord): (err: unknown) => never {
  return (err) => {
    record.end(GrpcCode.INTERNAL);
    throw err;
  };
}

/**
 * connect-es answers a wrong HTTP method (405) or a content type that does
 * not fit the method (415) with no body, which a Connect client reads as
 * `unknown`. The edge says what happened instead: `unimplemented` in a
 * Connect error body, with the same HTTP status (for a streaming content
 * type, in an end-stream message of a 200 answer), so the client and the
 * call's record agree. A 415 names the content types the method takes in
 * `Accept-Post`.
 */
function withErrorBody(
  res: UniversalServerResponse,
  request: Request,
  unary: boolean,
): UniversalServerResponse {
  if (res.body !== undefined || res.status === 200) return res;
  const message = res.status === 405
    ? `HTTP ${request.method} is not allowed for this method; use POST`
    : `content type ${
      JSON.stringify(request.headers.get("content-type") ?? "")
    } does not fit this method`;
  const header = new Headers(res.header);
  if (res.status === 405) header.set("allow", "POST");
  const parts = connectErrorParts(
    request.headers.get("content-type"),
    res.status,
    "unimplemented",
    message,
  );
  if (parts.status === 415) header.set("accept-post", acceptPostFor(unary));
  header.set("content-type", parts.contentType);
  return { ...res, status: parts.status, header, body: one(parts.body) };
}

/**
 * The response with its bytes counted; the record ends when the body does,
 * with the code its client is told: the one in a unary error's body, or in
 * a stream's end-stream message; CANCELLED when the client cancels the
 * body first (it never reads the end), INTERNAL when the body breaks.
 */
function observed(
  res: UniversalServerResponse,
  record: CallRecord,
  streamingRequest: boolean,
): UniversalServerResponse | Promise<UniversalServerResponse> {
  if (res.body === undefined) {
    record.end(GrpcCode.OK);
    return res;
  }
  if (res.status !== 200) {
    // A Connect client reads no body from a streaming call's non-200
    // answer: its code is the HTTP status's.
    return observedError(
      res,
      record,
      streamingRequest ? codeFromHttpStatus(res.status) : undefined,
    );
  }
  const streaming = isConnectStreaming(res.header?.get("content-type") ?? null);
  return {
    ...res,
    body: tapBody(res.body, (chunk) => {
      record.bytesOut += chunk.byteLength;
    }, (last, how) =>
      record.end(
        how === "cancelled"
          ? GrpcCode.CANCELLED
          : how === "failed"
          ? GrpcCode.INTERNAL
          : streaming && last
          ? endStreamCode(last) ?? record.code ?? GrpcCode.UNKNOWN
          : GrpcCode.OK,
      )),
  };
}

/**
 * An error answer, recorded with `code`, or else the code in its body. Its one chunk
 * is in memory already (connect-es builds it whole), so it is read here
 * and handed on as it was.
 */
async function observedError(
  res: UniversalServerResponse,
  record: CallRecord,
  code?: number,
): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body!) chunks.push(chunk);
  const bytes = chunks.length === 1 ? chunks[0] : concatBytes(chunks);
  record.bytesOut += bytes.byteLength;
  record.end(code ?? await errorBodyCode(bytes, res));
  return { ...res, body: one(bytes) };
}

/**
 * The code of a Connect error body; what a Connect client makes of the HTTP
 * status when the body is no Connect error.
 */
async function errorBodyCode(
  bytes: Uint8Array,
  res: UniversalServerResponse,
): Promise<number> {
  try {
    const encoding = res.header?.get("content-encoding");
    const zip = encoding ? COMPRESSIONS.find((c) => c.name === encoding) : null;
    if (zip === undefined) throw new Error(`unknown encoding ${encoding}`);
    // The edge made this body: no bound is needed beyond zlib's own.
    const json = zip ? await zip.decompress(bytes, 1 << 30) : bytes;
    const code = JSON.parse(new TextDecoder().decode(json)).code;
    const known = typeof code === "string" ? codeFromString(code) : undefined;
    if (known !== undefined) return known;
  } catch {
    // Not a Connect error body.
  }
  return codeFromHttpStatus(res.status);
}

/** How a response body ended: read to its end, broken, or cancelled. */
type BodyEnd = "done" | "failed" | "cancelled";

/**
 * `body` with `onChunk` called for each chunk and `onEnd` when it ends (with
 * its last chunk): read to the end, broken (`next()` rejects), or cancelled
 * by the client (`return()` or `throw()`). A cancel is reported before the
 * inner iterator hears of it: that call may wait or reject (connect-es's
 * own generators rethrow the reason), and the record must end either way.
 *
 * Not an async generator on purpose: connect-es cancels a response by
 * calling `throw()` on its body iterator, and a generator suspended in
 * `await inner.next()` queues that call behind the pending next(), which for
 * a quiet subscription never settles: the core's call was never cancelled.
 * Here throw() and return() reach the inner iterator at once.
 */
function tapBody(
  body: AsyncIterable<Uint8Array>,
  onChunk: (chunk: Uint8Array) => void,
  onEnd: (last: Uint8Array | undefined, how: BodyEnd) => void,
): AsyncIterable<Uint8Array> {
  const inner = body[Symbol.asyncIterator]();
  let last: Uint8Array | undefined;
  const iterator: AsyncIterator<Uint8Array> = {
    async next() {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await inner.next();
      } catch (err) {
        onEnd(last, "failed");
        throw err;
      }
      if (r.done) onEnd(last, "done");
      else {
        onChunk(r.value);
        last = r.value;
      }
      return r;
    },
    async return(value?: unknown) {
      onEnd(last, "cancelled");
      await inner.return?.(value);
      return { done: true, value: undefined };
    },
    async throw(reason?: unknown) {
      onEnd(last, "cancelled");
      if (inner.throw) await inner.throw(reason);
      else await inner.return?.();
      return { done: true, value: undefined };
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

/**
 * The response with `gone` aborted once its body ends: read to its end,
 * broken, or cancelled (at once: no body, nothing to wait for).
 *
 * On a cancel, `gone` is aborted before connect-es's own iterators hear of
 * it: they are async generators, and a generator suspended in
 * `await inner.next()` queues a `throw()` or `return()` behind that pending
 * next(), which for a quiet stream settles only with the room's next
 * message. The handler's signal (linked to `gone`) ends the upstream call at
 * once instead, and the pending next() with it. Deno.serve (2.9) cancels
 * the body of a client that went away but does not always abort
 * `request.signal` as well: under a churning load of connect-node streams,
 * about 1 in 7 cancelled bodies never saw the signal (bench/soak.ts;
 * docs/perf-log.md, "stop 29"), and their subscriptions stayed at the core,
 * and their calls at the edge, until the next message to the room, or for
 * ever in a room that stays quiet.
 *
 * And `gone` cancels the request body ({@linkcode requestBody}) when the
 * response is over however it ended, for the same reason on the request's
 * side.
 */
function endWithBody(
  res: UniversalServerResponse,
  gone: AbortController,
): UniversalServerResponse {
  if (res.body === undefined) {
    gone.abort();
    return res;
  }
  const inner = res.body[Symbol.asyncIterator]();
  const iterator: AsyncIterator<Uint8Array> = {
    async next() {
      try {
        const r = await inner.next();
        if (r.done) gone.abort();
        return r;
      } catch (err) {
        gone.abort();
        throw err;
      }
    },
    return(value?: unknown) {
      gone.abort();
      return inner.return?.(value) ??
        Promise.resolve({ done: true, value: undefined });
    },
    throw(reason?: unknown) {
      gone.abort();
      if (inner.throw) return inner.throw(reason);
      return inner.return?.() ??
        Promise.resolve({ done: true, value: undefined });
    },
  };
  return { ...res, body: { [Symbol.asyncIterator]: () => iterator } };
}

/**
 * A request body read for connect-es (in place of its own reader, which
 * nothing can cancel), whose reader is cancelled when `until` aborts: the
 * response is over, or the client went away. A read of the body of a client
 * that went away mid-request may never settle under Deno.serve (2.9); the
 * call waiting on it (connect-es's pipeline, the upstream call, its buffers:
 * ~33 KB of heap for a bidi Chat) stayed reachable from that read for ever,
 * once per such call. Cancelling the reader settles its pending read (done),
 * and the call is let go. (What Deno keeps of its own for such a read, ~4 KB
 * per call, gRPC-Web's body included, is Deno's.)
 */
function requestBody(
  body: ReadableStream<Uint8Array> | null,
  until: AbortSignal,
  deadlineMs?: number,
): AsyncIterable<Uint8Array> {
  const reader = body?.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cancel = () => {
    clearTimeout(timer);
    reader?.cancel().catch(() => {});
  };
  if (until.aborted) cancel();
  else until.addEventListener("abort", cancel, { once: true });
  // Past `deadlineMs` the read waiting then fails deadline_exceeded, as
  // does any read after it (`passed` first: once settled, it wins the race
  // over a read the cancelled reader answers at once).
  let passed: Promise<never> | undefined;
  if (deadlineMs !== undefined && reader !== undefined) {
    passed = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(readDeadlineError());
        reader.cancel().catch(() => {});
      }, deadlineMs);
    });
    passed.catch(() => {});
  }
  const read = (r: ReadableStreamDefaultReader<Uint8Array>) =>
    passed === undefined ? r.read() : Promise.race([passed, r.read()]);
  const done = (): Promise<IteratorResult<Uint8Array>> =>
    Promise.resolve({ done: true, value: undefined });
  const iterator: AsyncIterator<Uint8Array> = {
    async next() {
      if (reader === undefined) return { done: true, value: undefined };
      const r = await read(reader);
      if (r.done) {
        clearTimeout(timer);
        return { done: true, value: undefined };
      }
      return r;
    },
    return() {
      cancel();
      return done();
    },
    throw() {
      cancel();
      return done();
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

function readDeadlineError(): ConnectError {
  return new ConnectError(
    "deadline exceeded while reading the request",
    ConnectCode.DeadlineExceeded,
  );
}

/**
 * The code in the end-stream message that ends `chunk` (OK without one);
 * undefined when that message cannot be read (compressed, or malformed).
 */
function endStreamCode(chunk: Uint8Array): number | undefined {
  let at = 0;
  while (at + ENVELOPE_HEADER_BYTES <= chunk.byteLength) {
    const length = readEnvelopeLength(chunk, at);
    const from = at + ENVELOPE_HEADER_BYTES;
    if (chunk[at] & FLAG_END_STREAM) {
      try {
        const end = parseConnectEndStream(chunk.subarray(from, from + length));
        return end.error
          ? codeFromString(end.error.code) ?? GrpcCode.UNKNOWN
          : GrpcCode.OK;
      } catch {
        return undefined;
      }
    }
    at = from + length;
  }
  return GrpcCode.OK;
}
