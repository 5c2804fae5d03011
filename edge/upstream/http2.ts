/**
 * The fallback {@linkcode Upstream} (`--upstream-client node`): gRPC over
 * node:http2, forwarding message bytes with no protobuf decoding. The
 * default is the edge's own client (h2_upstream.ts).
 *
 * Every way a call can end (trailers, trailers-only headers, RST_STREAM,
 * connection loss, client abort, deadline) funnels into one `settle()`, so
 * the status promise resolves exactly once and never rejects.
 *
 * @module
 */
import http2 from "node:http2";
import { SlotList } from "../../collections/slot_list.ts";
import { EnvelopeParser, formatGrpcTimeout } from "../../protocol/mod.ts";
import {
  isReservedHeader,
  responseStart,
  statusFrom,
  statusFromResponseError,
} from "./headers.ts";
import { pump } from "./pump.ts";
import {
  headerFieldError,
  metadataLimitError,
  pathLimitError,
} from "./request_headers.ts";
import { SessionPool } from "./session.ts";
import { MessageQueue } from "./message_queue.ts";
import { Code, codeFromRstCode, statusFromAbort } from "./status.ts";
import {
  type CallOptions,
  PROBE_WAIT_MS,
  type RequestMessages,
  type Upstream,
  type UpstreamCall,
  type UpstreamStatus,
} from "./types.ts";

/** Options of {@linkcode createHttp2Upstream}. */
export interface Http2UpstreamOptions {
  /** Largest response message accepted from the core. */
  maxMessageBytes: number;
  /** Response messages buffered per call before pausing the stream. */
  highWaterMark?: number;
  /** Response bytes buffered per call before pausing the stream; 1 MiB. */
  highWaterBytes?: number;
  /** PEM CA for an https:// core with a private certificate. */
  ca?: string;
}

/** Creates an upstream speaking gRPC over HTTP/2 to `url` (http: or https:). */
export function createHttp2Upstream(
  url: string,
  options: Http2UpstreamOptions,
): Upstream {
  const pool = new SessionPool(url, options.ca);
  // Calls not yet settled, for close(): a SlotList, not a Set
  // (collections/slot_list.ts says why).
  const active = new SlotList<
    { settle: (s: UpstreamStatus) => void; slot: number }
  >();
  const highWaterMark = options.highWaterMark ?? 16;
  const highWaterBytes = options.highWaterBytes ?? 1024 * 1024;

  function call(
    path: string,
    requests: RequestMessages,
    opts: CallOptions,
  ): UpstreamCall {
    let resolveHeaders!: (h: Record<string, string>) => void;
    const headers = new Promise<Record<string, string>>((r) =>
      resolveHeaders = r
    );
    let resolveStatus!: (s: UpstreamStatus) => void;
    const status = new Promise<UpstreamStatus>((r) => resolveStatus = r);
    let settled = false;
    let stream: http2.ClientHttp2Stream | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let transportError: Error | undefined;

    const queue = new MessageQueue({
      highWaterMark,
      highWaterBytes,
      pause: () => stream?.pause(),
      resume: () => stream?.resume(),
      cancel: () =>
        settle({
          code: Code.CANCELLED,
          message: "response consumer stopped",
          trailers: {},
        }),
    });

    const entry = { settle, slot: -1 };
    function settle(s: UpstreamStatus): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal.removeEventListener("abort", onAbort);
      active.remove(entry);
      resolveHeaders({});
      if (s.code !== Code.OK) queue.end();
      resolveStatus(s);
      // Cancelling at once is the point: the core drops the subscriber now.
      if (stream && !stream.closed) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    }
    const onAbort = () => settle(statusFromAbort(opts.signal.reason));

    const messages: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        // node:http2 in Deno can emit 'data' before 'response'.
        await headers;
        yield* queue;
      },
    };
    const result = { headers, messages, status };

    if (opts.signal.aborted) {
      onAbort();
      return result;
    }
    // Over the edge's path or metadata bounds: fails alone, never sent (a
    // server may end the whole shared connection over a header list).
    const tooBig = pathLimitError(path) ?? metadataLimitError(opts.metadata);
    if (tooBig !== undefined) {
      settle({ code: Code.RESOURCE_EXHAUSTED, message: tooBig, trailers: {} });
      return result;
    }
    opts.signal.addEventListener("abort", onAbort);
    active.add(entry);

    const reqHeaders: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      "user-agent": "chat-edge/1",
    };
    for (const [k, v] of Object.entries(opts.metadata)) {
      const name = k.toLowerCase();
      if (isReservedHeader(name)) continue;
      // node:http2 throws for these: the call's fault, not the core's.
      const invalid = headerFieldError(name, v);
      if (invalid !== undefined) {
        settle({ code: Code.INVALID_ARGUMENT, message: invalid, trailers: {} });
        return result;
      }
      reqHeaders[name] = v;
    }
    if (opts.timeoutMs !== undefined) {
      reqHeaders["grpc-timeout"] = formatGrpcTimeout(opts.timeoutMs);
      timer = setTimeout(
        () =>
          settle({
            code: Code.DEADLINE_EXCEEDED,
            message: "deadline exceeded",
            trailers: {},
          }),
        opts.timeoutMs,
      );
    }

    try {
      stream = pool.get().request(reqHeaders, { endStream: false });
    } catch (e) {
      settle({
        code: Code.UNAVAILABLE,
        message: `upstream unavailable: ${(e as Error).message}`,
        trailers: {},
      });
      return result;
    }

    const parser = new EnvelopeParser({
      maxMessageBytes: options.maxMessageBytes,
      allowedFlags: 0,
    });
    let httpFailure: UpstreamStatus | undefined;
    let trailersOnly: UpstreamStatus | undefined;

    stream.on("response", (h) => {
      const start = responseStart(h);
      if (start.kind === "failure") httpFailure = start.status;
      else if (start.kind === "trailers-only") trailersOnly = start.status;
      else resolveHeaders(start.metadata);
    });
    stream.on("data", (chunk: Uint8Array) => {
      try {
        for (const env of parser.push(chunk)) queue.push(env.data);
      } catch (e) {
        settle(statusFromResponseError(e));
      }
    });
    stream.on("trailers", (t) => {
      if (!httpFailure) trailersOnly = statusFrom(t);
    });
    stream.on("error", (e) => transportError = e);
    stream.on("close", () => {
      if (settled) return;
      let s = httpFailure ?? trailersOnly;
      if (s === undefined && transportError) {
        s = {
          code: Code.UNAVAILABLE,
          message: `upstream unavailable: ${transportError.message}`,
          trailers: {},
        };
      } else if (s === undefined && stream!.rstCode) {
        s = {
          code: codeFromRstCode(stream!.rstCode),
          message: `upstream reset the stream (code ${stream!.rstCode})`,
          trailers: {},
        };
      }
      try {
        parser.finish();
      } catch (e) {
        s ??= statusFromResponseError(e);
      }
      queue.end();
      settle(
        s ??
          {
            code: Code.INTERNAL,
            message: "upstream ended the stream without a status",
            trailers: {},
          },
      );
    });

    pump(stream, requests, settle);
    return result;
  }

  return {
    call,
    healthy: () => pool.ping(PROBE_WAIT_MS),
    abandon(message) {
      for (const { settle } of active.values()) {
        settle({
          code: Code.UNAVAILABLE,
          message: `upstream unavailable: upstream (${
            new URL(url).host
          }) ${message}`,
          trailers: {},
        });
      }
      // Every session goes; the next call opens a new one.
      void pool.close();
    },
    async close() {
      for (const { settle } of active.values()) {
        settle({
          code: Code.UNAVAILABLE,
          message: "edge is shutting down",
          trailers: {},
        });
      }
      await pool.close();
    },
  };
}
