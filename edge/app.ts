/**
 * The edge's HTTP surface as a Hono app: CORS, health, and every RPC path
 * dispatched by content type to the gRPC-Web or the Connect handler.
 *
 * Built from what varies (upstream and config) so tests run it on a real
 * socket against a real core, and Deno Deploy runs the very same app.
 *
 * @module
 */
import type { DescService } from "@bufbuild/protobuf";
import { Hono } from "hono";
import { ChatService } from "../gen/chat_pb.ts";
import type { EdgeConfig } from "./config.ts";
import { createConnectHandler } from "./connect.ts";
import { corsSimpleHeaders, edgeCors } from "./cors.ts";
import { createGrpcWebHandler } from "./grpc_web.ts";
import { ASSETS } from "./assets.ts";
import { ACCEPT_POST_ANY, acceptPostFor } from "./accept_post.ts";
import { isNativeGrpc, nativeGrpcAnswer } from "./native_grpc.ts";
import { Code } from "../protocol/status.ts";
import { connectErrorAnswer } from "../protocol/connect_error_answer.ts";
import { CallObserver, type CallProtocol } from "./ops/calls.ts";
import { EdgeMetrics, metricsHandler } from "./ops/metrics.ts";
import { createStaticHandler } from "./static.ts";
import { createWebSocketBridge } from "./websocket.ts";
import type { EdgeShutdown } from "./shutdown.ts";
import { devTokenHandler } from "./dev_token.ts";
import {
  clientIp,
  ipSlots,
  refusedCall,
  tooManyRequests,
} from "./ip_limits.ts";
import type { Upstream } from "./upstream/types.ts";
import type { BalancedUpstream } from "./upstream/balancer.ts";

/** What {@linkcode createEdgeApp} needs. */
export interface EdgeAppOptions {
  upstream: Upstream;
  config: Readonly<EdgeConfig>;
  /** Services served over Connect; gRPC-Web forwards any path. */
  services?: readonly DescService[];
  /**
   * Records calls: metrics at /metrics and a log line per call. Default: a
   * fresh registry, lines in `config.logFormat` to `writeLine`.
   */
  calls?: CallObserver;
  /** Where the default observer writes each call's line; console.log. */
  writeLine?: (line: string) => void;
  /**
   * The process's stop (edge/shutdown.ts): WebSocket bridge calls end
   * UNAVAILABLE with their status frame, or as the core answers for unary
   * calls it has, before `Deno.serve`'s shutdown closes their sockets with
   * none.
   */
  shutdown?: EdgeShutdown;
  /**
   * false sends every request through Hono's routes, without the gRPC-Web
   * and Connect bypass below (tests compare the two answers). Default true.
   */
  fastPaths?: boolean;
}

const CONNECT_TYPES = /^application\/(connect\+)?(json|proto)$/;

// `/<service>/<method>` in plain characters, which a URL parser leaves as
// is; any other path (escapes, dot segments) takes the Hono route.
const PLAIN_RPC_PATH = /^\/[\w~-][\w.~-]*\/[\w~-][\w.~-]*$/;

/** The gRPC paths of `services`' methods of these kinds. */
function pathsOf(
  services: readonly DescService[],
  ...kinds: DescService["methods"][number]["methodKind"][]
): string[] {
  return services.flatMap((s) =>
    s.methods
      .filter((m) => kinds.includes(m.methodKind))
      .map((m) => `/${s.typeName}/${m.name}`)
  );
}

/** The path of an absolute request URL, without parsing the whole URL. */
function rawPath(url: string): string {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  if (start < 0) return "/";
  let end = url.length;
  const query = url.indexOf("?", start);
  if (query >= 0) end = query;
  const hash = url.indexOf("#", start);
  if (hash >= 0 && hash < end) end = hash;
  return url.slice(start, end);
}

function mediaTypeOf(value: string): string {
  return value.split(";")[0].trim().toLowerCase();
}

function mediaType(request: Request): string {
  return mediaTypeOf(request.headers.get("content-type") ?? "");
}

/**
 * The edge's call records (metrics and a line per call) for `services`:
 * what {@linkcode createEdgeApp} makes when given none. A process that
 * shuts down makes its own, to `close()` it last.
 */
export function createCallObserver(
  upstream: Upstream,
  config: Readonly<EdgeConfig>,
  services: readonly DescService[] = [ChatService],
  write?: (line: string) => void,
): CallObserver {
  return new CallObserver({
    metrics: new EdgeMetrics({
      upstreamConnections: upstream.connections?.bind(upstream),
      upstreamResends: upstream.resends?.bind(upstream),
    }),
    knownPaths: new Set(
      services.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)),
    ),
    logFormat: config.logFormat,
    write,
  });
}

/** Creates the edge app. */
export function createEdgeApp(options: EdgeAppOptions): Hono {
  const { upstream, config } = options;
  const services = options.services ?? [ChatService];
  const calls = options.calls ??
    createCallObserver(upstream, config, services, options.writeLine);
  // Bidi request bodies checked before the call unless HTTP/1.1 streams
  // are allowed (edge/http1.ts).
  const bidiPaths = new Set(
    config.http1Bidi === "refuse" ? pathsOf(services, "bidi_streaming") : [],
  );
  const grpcWeb = createGrpcWebHandler(upstream, {
    maxMessageBytes: config.maxMessageBytes,
    calls,
    bidiPaths,
  });
  const connect = createConnectHandler(upstream, {
    services,
    maxMessageBytes: config.maxMessageBytes,
    calls,
    bidiPaths,
  });
  const nativeGrpc = nativeGrpcAnswer(config.upstream.join(", "));
  // What a 415 names as accepted, per method path.
  const acceptPost = new Map(
    services.flatMap((s) =>
      s.methods.map((m) => [
        `/${s.typeName}/${m.name}`,
        acceptPostFor(m.methodKind === "unary"),
      ])
    ),
  );
  const app = new Hono();

  // Prometheus text exposition, behind a bearer token when one is set.
  // Registered before CORS, which it does not get: a scraper is no browser,
  // and no web page should read the edge's metrics.
  const metrics = metricsHandler(calls.metrics, config.metricsToken);
  app.get("/metrics", (c) => metrics(c.req.raw));

  const withCors = edgeCors(config.allowedOrigins);
  app.use(
    "*",
    (c, next) => c.req.path === "/metrics" ? next() : withCors(c, next),
  );

  app.get("/healthz", async (c) => {
    const up = await upstream.healthy();
    // Several cores (balancer.ts): each one's state too.
    const members = (upstream as Partial<BalancedUpstream>).members?.();
    // Stopping (waiting for bridge calls, then draining): a balancer in
    // front sends new clients elsewhere.
    const stopping = options.shutdown?.stopping.aborted === true;
    return c.json({
      status: stopping ? "stopping" : up ? "ok" : "unavailable",
      upstream: up ? "up" : "down",
      ...(members ? { upstreams: members } : {}),
    }, up && !stopping ? 200 : 503);
  });

  // Browser page: embedded strings (gen/web_assets.ts), no file reads at run
  // time, compressed once per encoding (edge/static.ts).
  const serveStatic = createStaticHandler();
  for (const path of Object.keys(ASSETS)) {
    app.get(path, (c) => serveStatic(c.req.raw) ?? c.notFound());
  }

  // WebSocket bridge: client-streaming and bidi calls from browsers (web/WEBSOCKET.md).
  const bridge = createWebSocketBridge(upstream, {
    maxMessageBytes: config.maxMessageBytes,
    allowedOrigins: config.allowedOrigins,
    perIp: ipSlots(config.maxWebSocketsPerIp),
    trustProxy: config.trustProxy,
    calls,
    shutdown: options.shutdown,
    singleRequestPaths: pathsOf(services, "unary", "server_streaming"),
    unaryPaths: pathsOf(services, "unary"),
  });
  app.get(
    "/ws",
    config.webSocketBridge === "on"
      ? (c) => bridge(c, c.env)
      : (c) =>
        c.text("the WebSocket bridge is off (--websocket-bridge)\n", 404),
  );

  if (config.devJwtSecret !== "") {
    app.get(
      "/auth/dev-token",
      devTokenHandler({
        secret: config.devJwtSecret,
        issuer: config.devJwtIssuer || undefined,
        audience: config.devJwtAudience || undefined,
      }),
    );
  } else {
    // "No development tokens here": 204, not 404, which every browser logs
    // as a console error on each visit to the page.
    app.get("/auth/dev-token", (c) => c.body(null, 204));
  }

  app.all("/:service/:method", async (c) => {
    const request = c.req.raw;
    const type = mediaType(request);
    if (type.startsWith("application/grpc-web")) return await grpcWeb(request);
    if (isNativeGrpc(type)) {
      calls.start("grpc", new URL(request.url).pathname).end(
        Code.UNIMPLEMENTED,
      );
      return await nativeGrpc(request);
    }
    if (request.method !== "GET" && !CONNECT_TYPES.test(type)) {
      return new Response(
        `unsupported content type ${JSON.stringify(type)}\n`,
        {
          status: 415,
          headers: {
            "accept-post": acceptPost.get(new URL(request.url).pathname) ??
              ACCEPT_POST_ANY,
          },
        },
      );
    }
    const response = connect(request);
    if (response) return await response;
    const path = new URL(request.url).pathname;
    // Recorded as method "unknown": a label per path would grow without bound.
    calls.start("connect", path).end(Code.UNIMPLEMENTED);
    return connectErrorAnswer(
      request,
      404,
      "unimplemented",
      `no method at ${path}`,
    );
  });

  // Unexpected only: protocol errors are answered by the handlers. A
  // Connect client is told INTERNAL in its protocol's form (the call record
  // says INTERNAL too); any other gets a plain 500.
  const internalError = (
    err: unknown,
    request?: Request,
    headers: [string, string][] = [],
  ) => {
    console.error("edge: unhandled error", err);
    return request !== undefined && rpcProtocol(request) === "connect"
      ? connectErrorAnswer(request, 500, "internal", "internal error", headers)
      : new Response("internal error\n", { status: 500 });
  };
  app.onError((err, c) => internalError(err, c.req.raw));

  // gRPC-Web and Connect POSTs skip Hono's routing and middleware chain: per
  // call they cost more than the proxying itself (docs/edge-perf-log.md,
  // docs/perf-log.md). The answer is the same as through the route above,
  // CORS headers included.
  const cors = corsSimpleHeaders(config.allowedOrigins);
  const anyOrigin = config.allowedOrigins.includes("*");
  const honoFetch = app.fetch;
  if (options.fastPaths !== false) {
    app.fetch = (request, ...rest) => {
      if (request.method !== "POST") return honoFetch(request, ...rest);
      const type = request.headers.get("content-type");
      if (type === null) return honoFetch(request, ...rest);
      const media = mediaTypeOf(type);
      const isGrpcWeb = media.startsWith("application/grpc-web");
      if (!isGrpcWeb && !CONNECT_TYPES.test(media)) {
        return honoFetch(request, ...rest);
      }
      const path = rawPath(request.url);
      if (!PLAIN_RPC_PATH.test(path)) return honoFetch(request, ...rest);
      // Each header read is a call into Deno (~1 µs): none that is not needed.
      const origin = anyOrigin ? null : request.headers.get("origin");
      if (isGrpcWeb) {
        return grpcWeb(request, cors(origin), path, type).catch((err) =>
          internalError(err)
        );
      }
      // An unknown method gets the route's 404.
      const headers = cors(origin);
      const answer = connect(request, path, headers);
      if (answer === undefined) return honoFetch(request, ...rest);
      return answer.catch((err) => internalError(err, request, headers));
    };
  }

  limitRequestsPerIp(
    app,
    config.maxRequestsPerIp,
    config.trustProxy,
    cors,
    calls,
  );
  if (options.shutdown) {
    refuseCallsWhileStopping(app, options.shutdown.stopping, cors, calls);
  }
  return app;
}

/** The protocol of an RPC request by its content type; undefined for others. */
function rpcProtocol(request: Request): CallProtocol | undefined {
  const media = mediaType(request);
  if (media.startsWith("application/grpc-web-text")) return "grpc-web-text";
  if (media.startsWith("application/grpc-web")) return "grpc-web";
  if (isNativeGrpc(media)) return "grpc";
  if (CONNECT_TYPES.test(media)) return "connect";
  return undefined;
}

/**
 * Wraps the app's fetch so that, once the edge stops, a new gRPC-Web,
 * Connect or gRPC call is refused UNAVAILABLE before it reaches the core.
 * Deno.serve still listens while the stop waits for unary bridge calls
 * (edge/shutdown.ts): a call taken then could be cut at the end of the
 * grace after the core acted on it, and its client, told UNAVAILABLE,
 * would send it again. Refused, it is safe to retry elsewhere.
 */
function refuseCallsWhileStopping(
  app: Hono,
  stopping: AbortSignal,
  cors: (origin: string | null) => [string, string][],
  calls: CallObserver,
): void {
  const inner = app.fetch;
  app.fetch = (request, ...rest) => {
    if (!stopping.aborted) return inner(request, ...rest);
    const protocol = rpcProtocol(request);
    if (protocol === undefined) return inner(request, ...rest);
    calls.refused(protocol, rawPath(request.url), Code.UNAVAILABLE);
    return refusedCall(
      request,
      Code.UNAVAILABLE,
      503,
      "unavailable",
      "edge is shutting down",
      cors(request.headers.get("origin")),
    );
  };
}

/**
 * Wraps the app's fetch so that each client IP has at most `max` requests
 * in flight (edge/ip_limits.ts); a request counts until Deno.serve has sent
 * its whole response.
 */
function limitRequestsPerIp(
  app: Hono,
  max: number,
  trustProxy: number,
  cors: (origin: string | null) => [string, string][],
  calls: CallObserver,
): void {
  const slot = ipSlots(max);
  if (slot === undefined) return;
  const inner = app.fetch;
  app.fetch = (request, env, ...rest) => {
    const ip = clientIp(env, request.headers, trustProxy);
    if (ip === undefined) return inner(request, env, ...rest);
    const release = slot(ip);
    if (release === undefined) {
      // A refused call is a call that ended: its client reads
      // RESOURCE_EXHAUSTED (other requests, pages and /metrics, are none).
      const protocol = rpcProtocol(request);
      if (protocol !== undefined) {
        calls.refused(protocol, rawPath(request.url), Code.RESOURCE_EXHAUSTED);
      }
      return tooManyRequests(request, max, cors(request.headers.get("origin")));
    }
    (env as Deno.ServeHandlerInfo).completed.then(release, release);
    return inner(request, env, ...rest);
  };
}
