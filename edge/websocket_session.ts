/**
 * One bridged call: reads the socket's frames, drives the upstream call, ends once.
 *
 * Every way a call can end (the core's status, a bad frame, an oversize
 * message, the deadline, the client closing or dropping the socket) goes through
 * `finish()`, which runs once: it sends the status frame if the socket is
 * still open, closes it, and aborts the upstream call so the core sees a
 * cancel rather than a stream left hanging.
 *
 * @module
 */
import {
  type BridgeCallHeader,
  type BridgeStatus,
  decodeFrame,
  encodeFrame,
  encodeStatusFrame,
  FLAG_DATA,
  FLAG_END,
} from "../protocol/ws_bridge.ts";
import { Code } from "../protocol/status.ts";
import type { CallObserver, CallRecord } from "./ops/calls.ts";
import type { EdgeShutdown } from "./shutdown.ts";
import type { Upstream } from "./upstream/types.ts";
import { filterMetadata, parseCallHeader } from "./websocket_header.ts";
import { RequestQueue } from "./websocket_queue.ts";

/** Resolved limits of one session (see `WebSocketBridgeOptions`). */
export interface SessionLimits {
  maxMessageBytes: number;
  allowedMetadata: ReadonlySet<string>;
  maxTimeoutMs: number;
  maxBufferedBytes: number;
  headerTimeoutMs: number;
  /** Methods that take one request: sent upstream whole (see below). */
  singleRequestPaths: ReadonlySet<string>;
  /** Unary methods: one the core has holds the edge's stop (shutdown.ts). */
  unaryPaths: ReadonlySet<string>;
}

/** Socket send buffer above which responses wait, so a slow browser slows the core. */
const SEND_HIGH_WATER = 1 << 20;
/**
 * How long a call of a method that takes one request waits for the client's
 * half-close before it goes upstream anyway, its request streamed (a client
 * that keeps its side open). The page sends header, request and half-close
 * at once.
 */
const WHOLE_REQUEST_WAIT_MS = 100;

/** `first`, then what `rest` yields. */
async function* ahead(
  first: Uint8Array,
  rest: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  yield first;
  yield* rest;
}

const fail = (code: number, message: string): BridgeStatus => ({
  code,
  message,
  trailers: {},
});

const shuttingDown = () => fail(Code.UNAVAILABLE, "edge is shutting down");

/**
 * Serves one call on an upgraded socket until it ends; `onEnd` runs once
 * the call has ended and its socket is closed; `calls` records it (open
 * sockets, one log line and metrics per call). When the edge stops
 * (`shutdown`), the call ends UNAVAILABLE at once, but for a unary call
 * the core has: that one holds the stop and ends as the core answers, or
 * UNAVAILABLE at the end of the grace.
 */
export function runBridgeSession(
  socket: WebSocket,
  upstream: Pick<Upstream, "call">,
  limits: SessionLimits,
  onEnd?: () => void,
  calls?: CallObserver,
  shutdown?: EdgeShutdown,
): void {
  socket.binaryType = "arraybuffer";
  let record: CallRecord | undefined;
  const abort = new AbortController();
  const requests = new RequestQueue(limits.maxBufferedBytes);
  let started = false;
  /**
   * A call whose method takes one request, waiting for its half-close to go
   * upstream with the request whole: as a list, the upstream may send it to
   * another core if the first never processed it (edge/upstream/balancer.ts),
   * as it does for gRPC-Web and Connect. What came meanwhile (one message at
   * most: a second one sends the call streaming) is in `held`.
   */
  let waiting:
    | ((source: Uint8Array[] | AsyncIterable<Uint8Array>) => void)
    | undefined;
  let held: Uint8Array | undefined;
  let holdTimer: ReturnType<typeof setTimeout> | undefined;
  let finished = false;
  let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(
    () => finish(fail(Code.INVALID_ARGUMENT, "no call header in time")),
    limits.headerTimeoutMs,
  );

  /** Set while a unary call the core has holds the edge's stop. */
  let release: (() => void) | undefined;
  /**
   * A unary call gone upstream streamed (no half-close within the wait):
   * the core has not got it whole, nor run it, until its half-close, so it
   * holds the stop only from then (a client that never half-closes would
   * hold it for the whole grace).
   */
  let unaryStreamed = false;
  const stopping = () => {
    if (release === undefined) finish(shuttingDown());
  };
  const ending = () => finish(shuttingDown());
  shutdown?.stopping.addEventListener("abort", stopping);
  shutdown?.ending.addEventListener("abort", ending);

  function finish(status: BridgeStatus): void {
    if (finished) return;
    finished = true;
    shutdown?.stopping.removeEventListener("abort", stopping);
    shutdown?.ending.removeEventListener("abort", ending);
    release?.();
    clearTimeout(timer);
    clearTimeout(holdTimer);
    waiting = undefined;
    held = undefined;
    requests.close();
    abort.abort();
    const sendStatus = () => {
      const frame = encodeStatusFrame(status);
      if (record) record.bytesOut += frame.byteLength;
      socket.send(frame);
      socket.close(1000, "call ended");
    };
    if (socket.readyState === WebSocket.OPEN) sendStatus();
    else if (socket.readyState === WebSocket.CONNECTING) {
      // Ended (the edge stopping) before Deno opened the socket: the status
      // goes once it has, else nothing would close it before Deno.serve's
      // shutdown, with no status frame.
      socket.addEventListener("open", sendStatus, { once: true });
    }
    // `onEnd` gives the IP's slot back when the socket is gone, not when
    // the call is: Deno keeps a closing socket open until the client
    // answers the close frame, which a client that never does would hold
    // forever, past --max-websockets-per-ip, with a slot given back for each.
    if (socket.readyState === WebSocket.CLOSING) {
      socket.addEventListener("close", () => onEnd?.(), { once: true });
    } else onEnd?.();
    record?.end(status.code);
  }

  function start(header: BridgeCallHeader): void {
    started = true;
    record = calls?.start("websocket", header.path);
    clearTimeout(timer);
    const timeoutMs = header.timeoutMs === undefined
      ? undefined
      : Math.min(header.timeoutMs, limits.maxTimeoutMs);
    // The upstream enforces the deadline too; this timer also covers time
    // spent waiting on a slow browser.
    timer = timeoutMs === undefined ? undefined : setTimeout(
      () => finish(fail(Code.DEADLINE_EXCEEDED, "deadline exceeded")),
      timeoutMs,
    );
    const began = performance.now();
    const begin = (source: Uint8Array[] | AsyncIterable<Uint8Array>) => {
      waiting = undefined;
      clearTimeout(holdTimer);
      // A call held for its half-close has spent some of its deadline: the
      // core gets what is left, as a balancer's resend does.
      const left = timeoutMs === undefined
        ? undefined
        : timeoutMs - (performance.now() - began);
      if (left !== undefined && left <= 0) {
        return finish(fail(Code.DEADLINE_EXCEEDED, "deadline exceeded"));
      }
      if (shutdown !== undefined && limits.unaryPaths.has(header.path)) {
        if (Array.isArray(source)) release = shutdown.hold();
        else unaryStreamed = true;
      }
      relay(header, left, source).then(finish, (err) => {
        // Upstream calls report failures as a status; a throw here is a bug.
        console.error("websocket bridge: relay failed", err);
        finish(fail(Code.INTERNAL, "internal error"));
      });
    };
    if (!limits.singleRequestPaths.has(header.path)) return begin(requests);
    waiting = begin;
    holdTimer = setTimeout(() => {
      const status = streamHeld();
      if (status) finish(status);
    }, WHOLE_REQUEST_WAIT_MS);
  }

  /**
   * A waiting call goes upstream with its request streamed after all. The
   * first message goes ahead of the queue, as on a call streamed from the
   * start, where the core has it by the time a second one comes: in the
   * queue as well, a second near the size limit would be over its bound.
   */
  function streamHeld(second?: Uint8Array): BridgeStatus | undefined {
    const begin = waiting;
    if (begin === undefined) return;
    const first = held;
    held = undefined;
    if (second && !requests.push(second)) return tooMuchWaiting();
    begin(first === undefined ? requests : ahead(first, requests));
  }

  function tooMuchWaiting(): BridgeStatus {
    return fail(
      Code.RESOURCE_EXHAUSTED,
      `more than ${limits.maxBufferedBytes} request bytes waiting for the core`,
    );
  }

  async function relay(
    header: BridgeCallHeader,
    timeoutMs: number | undefined,
    source: Uint8Array[] | AsyncIterable<Uint8Array>,
  ): Promise<BridgeStatus> {
    const call = upstream.call(header.path, source, {
      metadata: filterMetadata(header.metadata, limits.allowedMetadata),
      signal: abort.signal,
      timeoutMs,
    });
    for await (const message of call.messages) {
      if (message.byteLength > limits.maxMessageBytes) {
        return fail(
          Code.RESOURCE_EXHAUSTED,
          `response message of ${message.byteLength} bytes exceeds the limit of ${limits.maxMessageBytes}`,
        );
      }
      while (socket.bufferedAmount > SEND_HIGH_WATER && !finished) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      if (finished) break;
      const frame = encodeFrame(FLAG_DATA, message);
      if (record) record.bytesOut += frame.byteLength;
      socket.send(frame);
    }
    return await call.status;
  }

  /** Handles one client frame; returns the status to end with, if any. */
  function onFrame(data: string | ArrayBuffer): BridgeStatus | undefined {
    if (!started) {
      const header = typeof data === "string"
        ? parseCallHeader(data)
        : undefined;
      if (!header) {
        return fail(
          Code.INVALID_ARGUMENT,
          "first frame must be a JSON call header with a gRPC path",
        );
      }
      start(header);
      return;
    }
    if (typeof data === "string") {
      return fail(Code.INVALID_ARGUMENT, "text frame after the call header");
    }
    let frame;
    try {
      frame = decodeFrame(new Uint8Array(data));
    } catch (err) {
      return fail(
        Code.INVALID_ARGUMENT,
        err instanceof Error ? err.message : String(err),
      );
    }
    if (requests.closed) {
      return fail(Code.INVALID_ARGUMENT, "frame after half-close");
    }
    if (frame.flag === FLAG_END && frame.payload.byteLength === 0) {
      if (waiting) {
        const whole = held === undefined ? [] : [held];
        held = undefined;
        waiting(whole);
      }
      requests.close();
      if (unaryStreamed && release === undefined) release = shutdown!.hold();
      return;
    }
    if (frame.flag !== FLAG_DATA) {
      return fail(
        Code.INVALID_ARGUMENT,
        `unsupported frame flag 0x${frame.flag.toString(16)}`,
      );
    }
    if (frame.payload.byteLength > limits.maxMessageBytes) {
      return fail(
        Code.RESOURCE_EXHAUSTED,
        `request message of ${frame.payload.byteLength} bytes exceeds the limit of ${limits.maxMessageBytes}`,
      );
    }
    if (waiting) {
      // A second request for a one-request method: not ours to judge; it
      // goes upstream as it came, and the core answers it.
      if (held !== undefined) return streamHeld(frame.payload);
      held = frame.payload;
      return;
    }
    if (!requests.push(frame.payload)) return tooMuchWaiting();
  }

  socket.onmessage = (event) => {
    if (finished) return;
    if (record) {
      const data = event.data;
      record.bytesIn += typeof data === "string"
        ? data.length
        : data.byteLength;
    }
    const status = onFrame(event.data);
    if (status) finish(status);
  };
  if (calls) {
    calls.metrics.websocket(1);
    socket.addEventListener("close", () => calls.metrics.websocket(-1));
  }
  socket.onclose = () =>
    finish(fail(Code.CANCELLED, "client closed the socket"));
  // Deno reports a connection dropped without a close frame (a tab gone,
  // a network lost) as an error: the client went away, as with a close.
  // The edge's own failures end the call through relay()'s INTERNAL.
  socket.onerror = () => finish(fail(Code.CANCELLED, "client went away"));
}
