/**
 * The WebSocket bridge: one gRPC call per socket, as real streams to the core.
 *
 * Browsers cannot stream a fetch request body, so client-streaming and bidi
 * calls (and, for uniformity, any other) come in here. The framing is in
 * `protocol/ws_bridge.ts` and specified in `web/WEBSOCKET.md`: a text frame
 * names the method, binary frames carry gRPC-Web envelopes, and the server's
 * last frame is always a trailer envelope with the status. The socket is the
 * call's lifetime: closing it cancels the upstream call.
 *
 * @example
 * ```ts
 * const bridge = createWebSocketBridge(upstream, { maxMessageBytes: 4 << 20 });
 * app.get("/ws", (c) => bridge(c.req.raw));
 * ```
 *
 * @module
 */
import { MAX_TIMER_MS } from "../protocol/mod.ts";
import { FORWARDED_REQUEST_HEADERS } from "./metadata.ts";
import type { CallObserver } from "./ops/calls.ts";
import type { EdgeShutdown } from "./shutdown.ts";
import { clientIp, type IpSlot } from "./ip_limits.ts";
import type { Upstream } from "./upstream/types.ts";
import { runBridgeSession, type SessionLimits } from "./websocket_session.ts";

/** Limits of the bridge; the same numbers as the edge's HTTP paths. */
export interface WebSocketBridgeOptions {
  /** Largest message either way; larger ends the call with RESOURCE_EXHAUSTED. */
  maxMessageBytes: number;
  /** Metadata names (lower case) forwarded to the core; default: the HTTP paths' list. */
  allowedMetadata?: readonly string[];
  /**
   * Page origins allowed to open a socket (["*"] for any, the default), besides
   * the edge's own. CORS does not cover WebSockets, so the bridge checks
   * `Origin` itself.
   */
  allowedOrigins?: readonly string[];
  /** Longest deadline a client may ask for; longer ones are clamped. */
  maxTimeoutMs?: number;
  /**
   * Request bytes a socket may hold waiting for the core; a message that
   * would go past it ends the call with RESOURCE_EXHAUSTED. Default
   * {@linkcode defaultMaxBufferedBytes}.
   */
  maxBufferedBytes?: number;
  /** Time the client has to send its call header. */
  headerTimeoutMs?: number;
  /** Records each call and open socket (metrics, log line). */
  calls?: CallObserver;
  /** Concurrent sockets per client IP (edge/ip_limits.ts); none: no limit. */
  perIp?: IpSlot;
  /** Proxies in front that append X-Forwarded-For (edge/ip_limits.ts). */
  trustProxy?: number;
  /**
   * The edge's stop: no new socket, calls end UNAVAILABLE but for unary
   * calls the core has, which end as the core answers (within the grace).
   */
  shutdown?: EdgeShutdown;
  /**
   * Paths of the methods that take one request message (unary and server
   * streaming): such a call waits for its half-close and goes upstream with
   * its request whole, which a balancer over several cores can send to
   * another core if the first never processed it.
   */
  singleRequestPaths?: Iterable<string>;
  /** Paths of the unary methods (see `shutdown`). */
  unaryPaths?: Iterable<string>;
}

/** Room behind one largest message for the small ones a client sends on. */
const BUFFER_SLACK_BYTES = 64 * 1024;

/**
 * The default per-socket request buffer: one message of the largest size
 * plus 64 KiB. A browser cannot be slowed down (a WebSocket has no
 * receive-side flow control), but a Chat or Upload stream sends one message
 * after another and the core reads them as they come: the buffer only has to
 * hold what arrives while the previous message is still being written
 * upstream, which is at most one largest message and some small ones. It
 * was 4 × the message limit (40 MiB by default): a dozen sockets that sent
 * and never let the core catch up took the edge from 73 MB to 609 MB.
 */
export function defaultMaxBufferedBytes(maxMessageBytes: number): number {
  return maxMessageBytes + BUFFER_SLACK_BYTES;
}

/**
 * Whether `origin` is the edge's own (the page it serves at `/`), which an
 * allow-list of other sites must not lock out of the bridge: fetch calls from
 * that page need no CORS, and its Chat and Upload panels need this socket.
 * By host, as the browser's Host header names it; behind a proxy that
 * rewrites Host, list the public origin.
 */
function isOwnOrigin(origin: string, url: string): boolean {
  try {
    return new URL(origin).host === new URL(url).host;
  } catch {
    return false; // "null" (a sandboxed page, a file) or garbage
  }
}

/**
 * Creates the `GET /ws` handler; accepts a Request or a Hono context, and
 * Deno.serve's handler info (Hono's `env`) for the client's IP.
 */
export function createWebSocketBridge(
  upstream: Pick<Upstream, "call">,
  options: WebSocketBridgeOptions,
): (input: Request | { req: { raw: Request } }, info?: unknown) => Response {
  for (
    const key of [
      "maxMessageBytes",
      "maxTimeoutMs",
      "maxBufferedBytes",
      "headerTimeoutMs",
    ] as const
  ) {
    const value = options[key];
    if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
      throw new RangeError(
        `createWebSocketBridge: ${key} must be a positive integer, got ${value}`,
      );
    }
    // Two of them arm timers, which overflow (and fire at once) above this.
    if (
      key.endsWith("TimeoutMs") && value !== undefined && value > MAX_TIMER_MS
    ) {
      throw new RangeError(
        `createWebSocketBridge: ${key} must be at most ${MAX_TIMER_MS}, got ${value}`,
      );
    }
  }
  const limits: SessionLimits = {
    maxMessageBytes: options.maxMessageBytes,
    allowedMetadata: new Set(
      options.allowedMetadata ?? FORWARDED_REQUEST_HEADERS,
    ),
    maxTimeoutMs: options.maxTimeoutMs ?? 5 * 60_000,
    maxBufferedBytes: options.maxBufferedBytes ??
      defaultMaxBufferedBytes(options.maxMessageBytes),
    headerTimeoutMs: options.headerTimeoutMs ?? 10_000,
    singleRequestPaths: new Set(options.singleRequestPaths),
    unaryPaths: new Set(options.unaryPaths),
  };
  const origins = new Set(options.allowedOrigins ?? ["*"]);
  return (input, info) => {
    const request = input instanceof Request ? input : input.req.raw;
    if (options.shutdown?.stopping.aborted) {
      // Another edge (or this one, restarted) takes it: a client retries.
      return new Response("edge is shutting down\n", {
        status: 503,
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    }
    const origin = request.headers.get("origin");
    if (
      origin !== null && !origins.has("*") && !origins.has(origin) &&
      !isOwnOrigin(origin, request.url)
    ) {
      return new Response("origin not allowed\n", { status: 403 });
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response(
        "this endpoint speaks WebSocket only (see WEBSOCKET.md)\n",
        {
          status: 426,
          headers: {
            upgrade: "websocket",
            "content-type": "text/plain; charset=utf-8",
          },
        },
      );
    }
    const ip = clientIp(info, request.headers, options.trustProxy);
    const release = ip === undefined ? undefined : options.perIp?.(ip);
    if (release === undefined && ip !== undefined && options.perIp) {
      return new Response("too many WebSockets from this address\n", {
        status: 429,
      });
    }
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request);
    } catch (err) {
      // No session will end and release the IP's slot: give it back now.
      release?.();
      return new Response(
        `not a WebSocket upgrade: ${(err as Error).message}\n`,
        {
          status: 400,
          headers: { "content-type": "text/plain; charset=utf-8" },
        },
      );
    }
    runBridgeSession(
      upgraded.socket,
      upstream,
      limits,
      release,
      options.calls,
      options.shutdown,
    );
    return upgraded.response;
  };
}
