/**
 * The edge's Prometheus metrics, on `prom-client` (the maintained Node
 * client; it runs under Deno as is): calls by protocol, method and code with
 * latency histograms, active calls, open WebSockets, upstream connections,
 * and body bytes each way.
 *
 * Nothing here runs per message. Each call updates its counters once, when
 * it ends (see calls.ts), through label children cached per
 * (protocol, method, code), so a call costs two Map lookups and a few
 * additions. The method label only takes the names of served methods:
 * gRPC-Web forwards any path, and a label per arbitrary path would let a
 * client grow the registry without bound.
 *
 * @module
 */
import client from "prom-client";

/** Latency buckets in seconds: unary calls low, streams up to minutes. */
const DURATION_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
];

/** Names of the gRPC status codes, as grpc-prometheus labels them. */
export const CODE_NAMES: readonly string[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The name of a status code; out-of-range codes are UNKNOWN. */
export function codeName(code: number): string {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

interface CallSeries {
  calls: client.Counter.Internal;
  duration: client.Histogram.Internal<string>;
}

interface ProtocolSeries {
  active: client.Gauge.Internal<string>;
  received: client.Counter.Internal;
  sent: client.Counter.Internal;
}

/** What {@linkcode EdgeMetrics} reads at scrape time. */
export interface EdgeMetricsSources {
  /** Open HTTP/2 connections to the core, if the upstream can tell. */
  upstreamConnections?(): number;
}

/** The edge's registry and the series calls update. */
export class EdgeMetrics {
  readonly registry: client.Registry = new client.Registry();
  readonly #calls: client.Counter<string>;
  readonly #duration: client.Histogram<string>;
  readonly #active: client.Gauge<string>;
  readonly #received: client.Counter<string>;
  readonly #sent: client.Counter<string>;
  readonly #websockets: client.Gauge<string>;
  readonly #byCall = new Map<string, CallSeries>();
  readonly #byProtocol = new Map<string, ProtocolSeries>();

  constructor(sources: EdgeMetricsSources = {}) {
    const registers = [this.registry];
    const labelNames = ["protocol", "method", "code"];
    this.#calls = new client.Counter({
      name: "chat_edge_calls_total",
      help: "Calls that ended, by protocol, method and gRPC status code.",
      labelNames,
      registers,
    });
    this.#duration = new client.Histogram({
      name: "chat_edge_call_duration_seconds",
      help: "Call duration from request to the end of the response.",
      labelNames,
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#active = new client.Gauge({
      name: "chat_edge_active_calls",
      help: "Calls in progress (unary and streaming), by protocol.",
      labelNames: ["protocol"],
      registers,
    });
    this.#received = new client.Counter({
      name: "chat_edge_received_bytes_total",
      help: "Request body bytes of ended calls, by protocol.",
      labelNames: ["protocol"],
      registers,
    });
    this.#sent = new client.Counter({
      name: "chat_edge_sent_bytes_total",
      help: "Response body bytes of ended calls, by protocol.",
      labelNames: ["protocol"],
      registers,
    });
    this.#websockets = new client.Gauge({
      name: "chat_edge_websockets",
      help: "Open WebSocket bridge sockets.",
      registers,
    });
    new client.Gauge({
      name: "chat_edge_upstream_connections",
      help: "Open HTTP/2 connections to the core.",
      registers,
      collect() {
        const n = sources.upstreamConnections?.();
        if (n !== undefined) this.set(n);
      },
    });
    new client.Gauge({
      name: "chat_edge_resident_memory_bytes",
      help: "Resident set size of the edge process.",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
  }

  /** A call started. */
  callStarted(protocol: string): void {
    this.#protocol(protocol).active.inc();
  }

  /** A call ended; `method` is a served method's name or "unknown". */
  callEnded(
    protocol: string,
    method: string,
    code: number,
    seconds: number,
    bytesIn: number,
    bytesOut: number,
  ): void {
    const p = this.#protocol(protocol);
    p.active.dec();
    if (bytesIn > 0) p.received.inc(bytesIn);
    if (bytesOut > 0) p.sent.inc(bytesOut);
    const key = `${protocol} ${method} ${code}`;
    let s = this.#byCall.get(key);
    if (s === undefined) {
      const name = codeName(code);
      s = {
        calls: this.#calls.labels(protocol, method, name),
        duration: this.#duration.labels(protocol, method, name),
      };
      this.#byCall.set(key, s);
    }
    s.calls.inc();
    s.duration.observe(seconds);
  }

  /** A WebSocket opened (+1) or closed (-1). */
  websocket(delta: 1 | -1): void {
    this.#websockets.inc(delta);
  }

  /** The text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  #protocol(protocol: string): ProtocolSeries {
    let p = this.#byProtocol.get(protocol);
    if (p === undefined) {
      p = {
        active: this.#active.labels(protocol),
        received: this.#received.labels(protocol),
        sent: this.#sent.labels(protocol),
      };
      this.#byProtocol.set(protocol, p);
    }
    return p;
  }
}

/**
 * The `GET /metrics` handler: the text exposition, behind
 * `authorization: Bearer <token>` when `token` is not empty.
 */
export function metricsHandler(
  metrics: EdgeMetrics,
  token: string,
): (request: Request) => Promise<Response> {
  const expected = new TextEncoder().encode(`Bearer ${token}`);
  return async (request) => {
    if (
      token !== "" &&
      !sameBytes(request.headers.get("authorization") ?? "", expected)
    ) {
      return new Response("metrics need a bearer token\n", {
        status: 401,
        headers: { "www-authenticate": 'Bearer realm="metrics"' },
      });
    }
    return new Response(await metrics.render(), {
      headers: {
        "content-type": metrics.registry.contentType,
        "cache-control": "no-store",
      },
    });
  };
}

/** Compares in time independent of where the first difference is. */
function sameBytes(given: string, expected: Uint8Array): boolean {
  const bytes = new TextEncoder().encode(given);
  let diff = bytes.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) {
    diff |= (bytes[i] ?? 0) ^ expected[i];
  }
  return diff === 0;
}
