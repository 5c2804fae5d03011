/**
 * The edge's Prometheus metrics, on `prom-client` (the maintained Node
 * client; it runs under Deno as is): calls by protocol, method and code with
 * latency histograms, active calls, open WebSockets, upstream connections,
 * and body bytes each way.
 *
 * Nothing here runs per message. Each call updates its series once, when
 * it ends (see calls.ts): counters and gauges are plain numbers in maps
 * keyed by their labels, copied into prom-client's series at scrape time
 * (`collect`). The latency histogram too: its bucket counts are a plain
 * array per (protocol, method, code), exported at scrape time in exactly
 * prom-client's histogram form ({@linkcode CallDurationHistogram}), because
 * prom-client's own `observe()` validates and hashes the labels on every
 * call, even through a cached label child. That keeps the cost per call
 * well under a microsecond. The method label only takes the names of served methods:
 * gRPC-Web forwards any path, and a label per arbitrary path would let a
 * client grow the registry without bound.
 *
 * @module
 */
import client from "prom-client";

/** Latency buckets in seconds: unary calls low, streams up to minutes. */
export const DURATION_BUCKETS: readonly number[] = [
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
  labels: { protocol: string; method: string; code: string };
  /** Calls ended; also the histogram's count. */
  count: number;
  /** Calls per duration bucket (not cumulative); the last is above 300 s. */
  buckets: number[];
  /** Sum of the durations in seconds. */
  sum: number;
}

/** The index of the first bucket whose upper bound holds `seconds`. */
function bucketOf(seconds: number): number {
  let i = 0;
  while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]) i++;
  return i;
}

/** One exported sample, in prom-client's `MetricValue` form. */
interface HistogramSample {
  value: number;
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  metricName: string;
  /** Bucket samples carry prom-client's empty exemplar. */
  exemplar?: null;
}

/** What a registered metric's `get()` returns, as prom-client's metrics. */
interface HistogramData {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: HistogramSample[];
}

/**
 * The call duration histogram as a metric of the registry: the text and the
 * JSON export are what a prom-client `Histogram` with the same name, help,
 * labels, buckets and observations gives (edge/ops/metrics_test.ts compares
 * the two), read from {@linkcode CallSeries} at scrape time.
 */
class CallDurationHistogram {
  readonly name = "chat_edge_call_duration_seconds";
  readonly help = "Call duration from request to the end of the response.";
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #series: ReadonlyMap<string, CallSeries>;

  constructor(series: ReadonlyMap<string, CallSeries>) {
    this.#series = series;
  }

  /** For the text exposition: series labels kept apart, as prom-client. */
  getForPromString(): Promise<HistogramData> {
    const values: HistogramSample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < DURATION_BUCKETS.length; i++) {
        acc += s.buckets[i];
        values.push({
          value: acc,
          labels: { le: DURATION_BUCKETS[i] },
          sharedLabels: s.labels,
          metricName: bucket,
          exemplar: null,
        });
      }
      values.push(
        {
          value: s.count,
          labels: { le: "+Inf" },
          sharedLabels: s.labels,
          metricName: bucket,
          exemplar: null,
        },
        {
          value: s.sum,
          labels: {},
          sharedLabels: s.labels,
          metricName: `${this.name}_sum`,
        },
        {
          value: s.count,
          labels: {},
          sharedLabels: s.labels,
          metricName: `${this.name}_count`,
        },
      );
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }

  /** For JSON: each sample's labels with the series labels merged in. */
  async get(): Promise<HistogramData> {
    const data = await this.getForPromString();
    data.values = data.values.map(({ sharedLabels, ...sample }) => ({
      ...sample,
      labels: { ...sample.labels, ...sharedLabels },
    }));
    return data;
  }
}

interface ProtocolSeries {
  active: number;
  received: number;
  sent: number;
}

/** What {@linkcode EdgeMetrics} reads at scrape time. */
export interface EdgeMetricsSources {
  /** Open HTTP/2 connections to the core, if the upstream can tell. */
  upstreamConnections?(): number;
  /** Calls the upstream sent again (Upstream.resends). */
  upstreamResends?(): number;
}

/** The edge's registry and the series calls update. */
export class EdgeMetrics {
  readonly registry: client.Registry = new client.Registry();
  readonly #byCall = new Map<string, CallSeries>();
  readonly #byProtocol = new Map<string, ProtocolSeries>();
  #websockets = 0;

  constructor(sources: EdgeMetricsSources = {}) {
    const registers = [this.registry];
    const byCall = this.#byCall;
    const byProtocol = this.#byProtocol;
    const labelNames = ["protocol", "method", "code"];
    new client.Counter({
      name: "chat_edge_calls_total",
      help: "Calls that ended, by protocol, method and gRPC status code.",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const s of byCall.values()) this.inc(s.labels, s.count);
      },
    });
    this.registry.registerMetric(
      new CallDurationHistogram(byCall) as unknown as client.Metric,
    );
    const perProtocol = (
      name: string,
      help: string,
      type: "Gauge" | "Counter",
      field: keyof ProtocolSeries,
    ) => {
      const Metric = type === "Gauge" ? client.Gauge : client.Counter;
      new Metric({
        name,
        help,
        labelNames: ["protocol"],
        registers,
        collect(this: client.Gauge | client.Counter) {
          this.reset();
          for (const [protocol, p] of byProtocol) {
            this.inc({ protocol }, p[field]);
          }
        },
      });
    };
    perProtocol(
      "chat_edge_active_calls",
      "Calls in progress (unary and streaming), by protocol.",
      "Gauge",
      "active",
    );
    perProtocol(
      "chat_edge_received_bytes_total",
      "Request body bytes of ended calls, by protocol.",
      "Counter",
      "received",
    );
    perProtocol(
      "chat_edge_sent_bytes_total",
      "Response body bytes of ended calls, by protocol.",
      "Counter",
      "sent",
    );
    const websockets = () => this.#websockets;
    new client.Gauge({
      name: "chat_edge_websockets",
      help: "Open WebSocket bridge sockets.",
      registers,
      collect() {
        this.set(websockets());
      },
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
    new client.Counter({
      name: "chat_edge_upstream_resends_total",
      help:
        "Calls sent again because a core refused them unprocessed (its GOAWAY, REFUSED_STREAM) or never got them: to another core, or on a new connection.",
      registers,
      collect() {
        const n = sources.upstreamResends?.();
        if (n === undefined) return;
        this.reset();
        this.inc(n);
      },
    });
    // With --procs every process has its own registry: this tells a
    // scrape which one answered.
    new client.Gauge({
      name: "chat_edge_process_id",
      help: "The pid of the edge process that answered this scrape.",
      registers,
      collect() {
        this.set(Deno.pid);
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
    this.#protocol(protocol).active++;
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
    p.active--;
    p.received += bytesIn;
    p.sent += bytesOut;
    const key = `${protocol} ${method} ${code}`;
    let s = this.#byCall.get(key);
    if (s === undefined) {
      const name = codeName(code);
      s = {
        labels: { protocol, method, code: name },
        count: 0,
        buckets: new Array(DURATION_BUCKETS.length + 1).fill(0),
        sum: 0,
      };
      this.#byCall.set(key, s);
    }
    s.count++;
    s.buckets[bucketOf(seconds)]++;
    s.sum += seconds;
  }

  /** A WebSocket opened (+1) or closed (-1). */
  websocket(delta: 1 | -1): void {
    this.#websockets += delta;
  }

  /** The text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  #protocol(protocol: string): ProtocolSeries {
    let p = this.#byProtocol.get(protocol);
    if (p === undefined) {
      p = { active: 0, received: 0, sent: 0 };
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
  const expected = new TextEncoder().encode(token);
  return async (request) => {
    // The scheme is case-insensitive (RFC 9110 11.1): "bearer x" is "Bearer x".
    const given = /^bearer +(\S+)$/i.exec(
      request.headers.get("authorization") ?? "",
    )?.[1] ?? "";
    if (token !== "" && !sameBytes(given, expected)) {
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
