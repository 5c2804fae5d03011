/**
 * {@linkcode Upstream} over the edge's own HTTP/2 client (http2/client/, on
 * `Deno.connect` / `Deno.connectTls`), with the same observable behaviour as
 * the node:http2 one in ./http2.ts: message bytes are forwarded with no
 * protobuf decoding, and every way a call can end funnels into one
 * `settle()`, so the status promise resolves exactly once and never rejects.
 *
 * A call is one object that is at once the stream's handler, the message
 * queue's producer control and the abort listener, so the hot path makes no
 * closures per call or per message.
 *
 * @module
 */
import { SlotList, type Slotted } from "../../collections/slot_list.ts";
import { EnvelopeParser } from "../../protocol/mod.ts";
import type { HeaderField } from "../../protocol/http2/hpack.ts";
import {
  headerRecord,
  responseStart,
  statusFrom,
  statusFromResponseError,
} from "./headers.ts";
import { MessageQueue, type MessageQueueOptions } from "./message_queue.ts";
import {
  Code,
  codeFromRstCode,
  statusFromAbort,
  statusFromRequestError,
} from "./status.ts";
import {
  type CallOptions,
  PROBE_WAIT_MS,
  type RequestMessages,
  type Upstream,
  type UpstreamCall,
  type UpstreamStatus,
} from "./types.ts";
import { ErrorCode } from "../../protocol/http2/frames.ts";
import { H2Pool } from "../../http2/client/pool.ts";
import { HeaderLimitError, RequestHeaderEncoder } from "./request_headers.ts";
import { H2Stream, type StreamHandler } from "../../http2/client/stream.ts";

/** Options of {@linkcode createH2Upstream}; a superset of node:http2's. */
export interface H2UpstreamOptions {
  /** Largest response message accepted from the core. */
  maxMessageBytes: number;
  /** Response messages buffered per call before the stream's window stops. */
  highWaterMark?: number;
  /** Response bytes buffered per call before the stream's window stops;
   * default the stream window. */
  highWaterBytes?: number;
  /** PEM CA for an https:// core with a private certificate. */
  ca?: string;
  /**
   * Response bytes a call may have in flight unread (our
   * SETTINGS_INITIAL_WINDOW_SIZE); default 1 MiB.
   */
  streamWindow?: number;
  /**
   * How long connecting, the TLS handshake and the core's first SETTINGS may
   * take before the waiting calls fail UNAVAILABLE; default 10 s.
   */
  connectTimeoutMs?: number;
  /**
   * Silence from the core, while calls are open on a connection, after which
   * the edge sends an HTTP/2 PING (grpc's keepalive_time); default 30 s, 0
   * turns keepalive off. It finds a core host that died without closing its
   * sockets, which would otherwise hang streaming calls for ~15 minutes.
   */
  keepaliveIntervalMs?: number;
  /**
   * How long that PING may go unanswered before the connection's calls fail
   * UNAVAILABLE and the next call dials afresh; default 10 s.
   */
  keepaliveTimeoutMs?: number;
  /**
   * A call whose request is known whole (unary, server streaming) that the
   * core refused unprocessed (REFUSED_STREAM, or above its GOAWAY's last
   * stream id) is sent once more on another connection, within its
   * deadline: gRPC's transparent retry (gRFC A6). The core may have told
   * only this connection to go away (GOAWAY(ENHANCE_YOUR_CALM) when the
   * edge's clients cancel many calls at once), and a core run as several
   * processes on one port may take it in another. Default true; the
   * balancer over several cores turns it off and sends such a call to
   * another core instead.
   */
  retryRefused?: boolean;
}

const CONNECTION_WINDOW = 16 * 1024 * 1024;
const WRITE_HIGH_WATER = 256 * 1024;
const SETTINGS_TIMEOUT_MS = 10_000;
const KEEPALIVE_INTERVAL_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 10_000;

interface Shared {
  readonly pool: H2Pool;
  readonly headers: RequestHeaderEncoder;
  /** Calls not yet settled, for `close()`. */
  readonly active: SlotList<H2Call>;
  readonly highWaterMark: number;
  readonly highWaterBytes: number;
  readonly maxMessageBytes: number;
  readonly retryRefused: boolean;
  /** Calls sent again (transparent retries), for metrics. */
  resends: number;
}

/**
 * Creates an upstream speaking gRPC over HTTP/2 to `url`: h2c with prior
 * knowledge for http:, TLS with ALPN h2 for https:.
 *
 * @example
 * ```ts
 * const upstream = createH2Upstream("http://127.0.0.1:50051", {
 *   maxMessageBytes: 4 << 20,
 * });
 * ```
 */
export function createH2Upstream(
  url: string,
  options: H2UpstreamOptions,
): Upstream {
  const u = new URL(url);
  const keepaliveIntervalMs = options.keepaliveIntervalMs ??
    KEEPALIVE_INTERVAL_MS;
  const keepaliveTimeoutMs = options.keepaliveTimeoutMs ??
    KEEPALIVE_TIMEOUT_MS;
  if (!(keepaliveIntervalMs >= 0) || !(keepaliveTimeoutMs > 0)) {
    throw new RangeError(
      "keepaliveIntervalMs must be >= 0 and keepaliveTimeoutMs > 0",
    );
  }
  const streamWindow = options.streamWindow ?? 1024 * 1024;
  const shared: Shared = {
    pool: new H2Pool(url, {
      streamWindow,
      connectionWindow: CONNECTION_WINDOW,
      writeHighWater: WRITE_HIGH_WATER,
      settingsTimeoutMs: options.connectTimeoutMs ?? SETTINGS_TIMEOUT_MS,
      keepaliveIntervalMs,
      keepaliveTimeoutMs,
    }, options.ca),
    headers: new RequestHeaderEncoder(u.protocol.slice(0, -1), u.host),
    active: new SlotList(),
    highWaterMark: options.highWaterMark ?? 16,
    highWaterBytes: options.highWaterBytes ?? streamWindow,
    maxMessageBytes: options.maxMessageBytes,
    retryRefused: options.retryRefused ?? true,
    resends: 0,
  };
  return {
    call: (path, requests, opts) => new H2Call(shared, path, requests, opts),
    healthy: () => shared.pool.ping(PROBE_WAIT_MS),
    // The connection says "upstream": name the core too.
    abandon: (message) => shared.pool.abandon(`(${u.host}) ${message}`),
    connections: () => shared.pool.size,
    resends: () => shared.resends,
    async close() {
      for (const call of shared.active.values()) {
        call.settle(unavailable("edge is shutting down"));
      }
      await shared.pool.close();
    },
  };
}

function unavailable(message: string): UpstreamStatus {
  return { code: Code.UNAVAILABLE, message, trailers: {} };
}

function ignore(): void {}

/** One call; see the module comment for why it wears several hats. */
class H2Call
  implements
    UpstreamCall,
    StreamHandler,
    MessageQueueOptions,
    EventListenerObject,
    Slotted {
  /** Its place in `Shared.active`. */
  slot = -1;
  readonly headers: Promise<Record<string, string>>;
  readonly messages: MessageQueue;
  readonly status: Promise<UpstreamStatus>;
  readonly highWaterMark: number;
  readonly highWaterBytes: number;
  #resolveHeaders!: (h: Record<string, string>) => void;
  #resolveStatus!: (s: UpstreamStatus) => void;
  readonly #shared: Shared;
  readonly #signal: AbortSignal;
  #stream: H2Stream | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #settled = false;
  #status: UpstreamStatus | undefined;
  #parser: EnvelopeParser | undefined;
  #gotHeaders = false;
  #httpFailure: UpstreamStatus | undefined;
  #trailersOnly: UpstreamStatus | undefined;
  #requests: AsyncIterator<Uint8Array> | undefined;
  #drain: (() => void) | undefined;
  /** What a refused call is sent again with, until it has been once. */
  #retry: Retry | undefined;

  constructor(
    shared: Shared,
    path: string,
    requests: RequestMessages,
    opts: CallOptions,
  ) {
    this.headers = new Promise((r) => this.#resolveHeaders = r);
    this.status = new Promise((r) => this.#resolveStatus = r);
    this.highWaterMark = shared.highWaterMark;
    this.highWaterBytes = shared.highWaterBytes;
    this.messages = new MessageQueue(this);
    this.#shared = shared;
    this.#signal = opts.signal;
    if (opts.signal.aborted) {
      this.handleEvent();
      return;
    }
    opts.signal.addEventListener("abort", this);
    shared.active.add(this);
    if (shared.retryRefused && isMessageList(requests)) {
      this.#retry = {
        path,
        requests,
        metadata: opts.metadata,
        timeoutMs: opts.timeoutMs,
        began: opts.timeoutMs === undefined ? 0 : performance.now(),
      };
    }
    if (opts.timeoutMs !== undefined) {
      this.#timer = setTimeout(() =>
        this.settle({
          code: Code.DEADLINE_EXCEEDED,
          message: "deadline exceeded",
          trailers: {},
        }), opts.timeoutMs);
    }
    this.#send(path, requests, opts.metadata, opts.timeoutMs);
  }

  /** Sends the request on a new stream (the first time, or again). */
  #send(
    path: string,
    requests: RequestMessages,
    metadata: Record<string, string>,
    timeoutMs: number | undefined,
  ): void {
    const shared = this.#shared;
    let block: Uint8Array;
    try {
      block = shared.headers.build(path, metadata, timeoutMs);
    } catch (e) {
      // Over the edge's metadata bounds, or a value HTTP/2 cannot carry:
      // this call's fault, never the core's (an "upstream" status would
      // take the core out of balancing).
      this.settle({
        code: e instanceof HeaderLimitError
          ? Code.RESOURCE_EXHAUSTED
          : Code.INVALID_ARGUMENT,
        message: (e as Error).message,
        trailers: {},
      });
      return;
    }
    this.#stream = new H2Stream(this, block, shared.headers.listSize);
    shared.pool.place(this.#stream);
    if (!this.#settled) void this.#pump(requests);
  }

  /** Ends the call once; later calls are ignored. */
  settle(s: UpstreamStatus): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#retry = undefined;
    clearTimeout(this.#timer);
    this.#signal.removeEventListener("abort", this);
    this.#shared.active.remove(this);
    this.#resolveHeaders({});
    if (s.code !== Code.OK) this.messages.end();
    this.#status = s;
    this.#resolveStatus(s);
    // Cancelling at once is the point: the core drops the subscriber now.
    this.#stream?.reset(ErrorCode.CANCEL);
    const it = this.#requests;
    this.#requests = undefined;
    if (it?.return) it.return().then(ignore, ignore);
    this.onDrain();
  }

  /** The status once settled (see UpstreamCall). */
  statusNow(): UpstreamStatus | undefined {
    return this.#status;
  }

  /** The call's abort signal fired. */
  handleEvent(): void {
    this.settle(statusFromAbort(this.#signal.reason));
  }

  // --- MessageQueueOptions: the consumer steers the stream's window -------

  /** The queue is full: stop giving window to the core. */
  pause(): void {
    this.#stream?.pause();
  }

  /** The queue drained: give the window back. */
  resume(): void {
    this.#stream?.resume();
  }

  /** The consumer stopped early. */
  cancel(): void {
    this.settle({
      code: Code.CANCELLED,
      message: "response consumer stopped",
      trailers: {},
    });
  }

  // --- StreamHandler -------------------------------------------------------

  /** Response headers, trailers, or a trailers-only answer. */
  onHeaders(fields: HeaderField[], endStream: boolean): void {
    if (this.#settled) return;
    const h = headerRecord(fields);
    if (!this.#gotHeaders) {
      const code = Number(h[":status"]);
      // 1xx informational headers precede the real ones.
      if (code >= 100 && code < 200 && !endStream) return;
      this.#gotHeaders = true;
      // Answered: never sent again, so the request need not be kept (a
      // subscription lives for hours).
      this.#retry = undefined;
      const start = responseStart(h);
      if (start.kind === "failure") this.#httpFailure = start.status;
      else if (start.kind === "trailers-only") {
        this.#trailersOnly = start.status;
      } else this.#resolveHeaders(start.metadata);
      if (endStream) this.#finish(undefined, 0, undefined);
      return;
    }
    if (!endStream) {
      this.settle({
        code: Code.INTERNAL,
        message: "upstream sent a second header block without END_STREAM",
        trailers: {},
      });
      return;
    }
    if (!this.#httpFailure) this.#trailersOnly = statusFrom(h);
    this.#finish(undefined, 0, undefined);
  }

  /** Response bytes: split into messages and queued. */
  onData(data: Uint8Array, endStream: boolean): void {
    if (this.#settled) return;
    if (!this.#gotHeaders) {
      this.settle({
        code: Code.INTERNAL,
        message: "upstream sent DATA before HEADERS",
        trailers: {},
      });
      return;
    }
    // A non-gRPC answer's body (an HTML error page) is not parsed.
    if (data.byteLength > 0 && this.#httpFailure === undefined) {
      const parser = this.#parser ??= new EnvelopeParser({
        maxMessageBytes: this.#shared.maxMessageBytes,
        allowedFlags: 0,
      });
      try {
        const envelopes = parser.push(data);
        for (let i = 0; i < envelopes.length; i++) {
          this.messages.push(envelopes[i].data);
        }
      } catch (e) {
        this.settle(statusFromResponseError(e));
        return;
      }
    }
    if (endStream) this.#finish(undefined, 0, undefined);
  }

  /** RST_STREAM. */
  onReset(code: number, message?: string): void {
    // The core did not process it (RFC 9113 §8.7).
    if (code === ErrorCode.REFUSED_STREAM && this.#sendAgain()) return;
    this.#finish(undefined, code, message);
  }

  /** Connection lost, connection error, or excluded by GOAWAY. */
  onFail(message: string, unsent?: boolean, refused?: boolean): void {
    if (refused && unsent && this.#sendAgain()) return;
    this.#finish(message, 0, undefined, unsent, refused);
  }

  /**
   * Sends a call the core refused unprocessed once more, on whatever
   * connection the pool has for it (after a GOAWAY not the refusing one,
   * which is draining); false when it may not be (already sent again, a
   * streamed request, an answer begun, no time left: then it ends with the
   * refusal, even when its deadline has just passed).
   */
  #sendAgain(): boolean {
    const r = this.#retry;
    if (r === undefined || this.#settled || this.#gotHeaders) return false;
    this.#retry = undefined;
    let timeoutMs = r.timeoutMs;
    if (timeoutMs !== undefined) {
      timeoutMs = Math.floor(timeoutMs - (performance.now() - r.began));
      if (timeoutMs <= 0) return false;
    }
    this.#drain = undefined;
    this.#shared.resends++;
    this.#send(r.path, r.requests, r.metadata, timeoutMs);
    return true;
  }

  /** The stream can take more request bytes. */
  onDrain(): void {
    const wake = this.#drain;
    this.#drain = undefined;
    wake?.();
  }

  /** The stream closed: the status from what arrived, in node:http2's order. */
  #finish(
    failure: string | undefined,
    rst: number,
    rstMessage: string | undefined,
    unsent = false,
    refused = false,
  ): void {
    if (this.#settled) return;
    let s = this.#httpFailure ?? this.#trailersOnly;
    if (s === undefined && failure !== undefined) {
      s = unavailable(`upstream unavailable: ${failure}`);
      // Not if the peer answered it anyway (a GOAWAY that contradicts it).
      if (unsent && !this.#gotHeaders) {
        s.unsent = true;
        if (refused) s.refused = true;
      }
    } else if (s === undefined && rst !== 0) {
      s = {
        code: codeFromRstCode(rst),
        message: rstMessage ?? `upstream reset the stream (code ${rst})`,
        trailers: {},
      };
      // The core did not process it (RFC 9113 §8.7).
      if (rst === ErrorCode.REFUSED_STREAM && !this.#gotHeaders) {
        s.unsent = true;
        s.refused = true;
      }
    }
    if (this.#parser?.pending) {
      s ??= {
        code: Code.INTERNAL,
        message: "upstream response: stream ended inside a frame",
        trailers: {},
      };
    }
    this.messages.end();
    this.settle(
      s ?? {
        code: Code.INTERNAL,
        message: "upstream ended the stream without a status",
        trailers: {},
      },
    );
  }

  async #pump(requests: RequestMessages): Promise<void> {
    const stream = this.#stream!;
    if (isMessageList(requests)) {
      // All known: written in this turn, no iterator and no await per
      // message unless the stream asks to wait.
      for (const m of requests) {
        if (this.#settled || this.#stream !== stream) return;
        if (!stream.write(m) && !this.#settled) {
          await new Promise<void>((resolve) => this.#drain = resolve);
        }
      }
      // Not if it was sent again on another stream meanwhile.
      if (!this.#settled && this.#stream === stream) stream.end();
      return;
    }
    const it = requests[Symbol.asyncIterator]();
    this.#requests = it;
    try {
      while (!this.#settled) {
        const r = await it.next();
        if (r.done || this.#settled) break;
        if (!stream.write(r.value) && !this.#settled) {
          await new Promise<void>((resolve) => this.#drain = resolve);
        }
      }
      if (!this.#settled) stream.end();
    } catch (e) {
      this.settle(statusFromRequestError(e));
    } finally {
      this.#requests = undefined;
    }
  }
}

/** A call's request as sent, kept to send it again once (see H2Call). */
interface Retry {
  readonly path: string;
  readonly requests: readonly Uint8Array[];
  readonly metadata: Record<string, string>;
  readonly timeoutMs: number | undefined;
  /** performance.now() at the call's start, when it has a deadline. */
  readonly began: number;
}

function isMessageList(r: RequestMessages): r is readonly Uint8Array[] {
  return Array.isArray(r);
}
