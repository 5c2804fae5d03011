/**
 * The core's Prometheus metrics, on prom-client's Registry: its default
 * process metrics (CPU, RSS, heap, event-loop lag, GC), the gRPC call table
 * with go-grpc-prometheus's names, the chat hub's gauges and counters, and
 * a latency histogram the message store reports into.
 *
 * Everything but the store histogram is read at scrape time from counters
 * the server keeps anyway, so serving calls costs nothing extra here.
 */
import client from "prom-client";
import type { ChatHub } from "../rooms/hub.ts";
import {
  type CallStats,
  CODE_NAMES,
  LATENCY_BUCKETS,
  type MethodStats,
} from "./call_stats.ts";

/** Where the store reports how long its operations take. */
export interface StoreLatency {
  /** One operation (e.g. "append", "history") took `seconds`. */
  observe(operation: string, seconds: number): void;
}

/** What the registry reads from at scrape time. */
export interface MetricSources {
  calls: CallStats;
  hub: ChatHub<unknown>;
  /** 1 while the health status is SERVING, else 0. */
  serving(): boolean;
  /** Keyed posts of every RPC (rooms/idempotency.ts), unless turned off. */
  idempotency?: { readonly repeats: number; readonly size: number };
  /**
   * Connections open and refused so far, of those refused per IP, and sent
   * GOAWAY(ENHANCE_YOUR_CALM) for rapid reset (the h2 transport's listener).
   */
  connections?(): {
    open: number;
    refused: number;
    refusedPerIp: number;
    resetFloods: number;
  };
}

/** The registry and the hook the store observes into. */
export interface CoreMetrics {
  readonly registry: client.Registry;
  readonly storeLatency: StoreLatency;
  /** The exposition text, as served on /metrics. */
  text(): Promise<string>;
}

/** Builds the registry for one core server. */
export function createCoreMetrics(sources: MetricSources): CoreMetrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  // prom-client reads these from /proc/self, which the core may not read
  // (e.g. with --allow-read=node_modules only): RSS comes from
  // Deno.memoryUsage() instead, the others are left out rather than 0.
  // nodejs_gc_duration_seconds comes from a PerformanceObserver of "gc"
  // entries, which Deno 2.9 accepts and never feeds: a histogram that
  // stays empty would say no collection ever ran.
  for (const name of UNFED_METRICS) registry.removeSingleMetric(name);
  for (const metric of callMetrics(sources.calls)) {
    registry.registerMetric(metric as unknown as client.Metric);
  }
  const { hub } = sources;
  const gauge = (name: string, help: string, read: () => number) =>
    new client.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new client.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
    () => Deno.memoryUsage().rss,
  );
  gauge(
    "chat_active_streams",
    "Streaming RPCs open now.",
    () => hub.stats.activeStreams,
  );
  gauge("chat_subscribers", "Room subscribers now.", () => hub.subscriberCount);
  gauge(
    "chat_rooms",
    "Rooms with at least one subscriber.",
    () => hub.roomCount,
  );
  gauge(
    "chat_queued_messages",
    "Messages waiting in subscriber queues, all subscribers together.",
    () => hub.queueDepth().total,
  );
  gauge(
    "chat_queued_messages_max",
    "Messages waiting in the fullest subscriber queue.",
    () => hub.queueDepth().max,
  );
  counter(
    "chat_messages_published_total",
    "Messages published to rooms.",
    () => hub.stats.messagesPublished,
  );
  counter(
    "chat_deliveries_total",
    "Messages handed to subscribers (one message to N subscribers is N).",
    () => hub.stats.deliveries,
  );
  counter(
    "chat_dropped_messages_total",
    "Deliveries dropped by the slow-consumer policy (under drop: history no longer held them when the subscriber caught up).",
    () => hub.stats.dropped,
  );
  counter(
    "chat_subscribers_fell_behind_total",
    "Times a subscriber was too slow for a message (queue full) and went on from history once it drained, instead of dropping it.",
    () => hub.stats.fellBehind,
  );
  counter(
    "chat_slow_consumer_disconnects_total",
    "Subscribers ended by the slow-consumer policy.",
    () => hub.stats.slowDisconnects,
  );
  if (sources.connections) {
    const connections = sources.connections;
    gauge(
      "chat_connections",
      "Client connections open now (the h2 transport).",
      () => connections().open,
    );
    counter(
      "chat_connections_refused_total",
      "Connections refused for --max-connections or --max-connections-per-ip.",
      () => connections().refused,
    );
    counter(
      "chat_connections_refused_per_ip_total",
      "Of those, refused for --max-connections-per-ip.",
      () => connections().refusedPerIp,
    );
    counter(
      "chat_connections_reset_flood_total",
      "Connections sent GOAWAY(ENHANCE_YOUR_CALM) for too many premature stream resets (rapid reset, CVE-2023-44487); their open calls ran on.",
      () => connections().resetFloods,
    );
  }
  const idempotency = sources.idempotency;
  if (idempotency !== undefined) {
    counter(
      "chat_idempotent_repeats_total",
      "Posts (SendMessage calls, Upload and Chat messages) answered with an earlier post's result (same idempotency_key): retries that stored nothing twice.",
      () => idempotency.repeats,
    );
    gauge(
      "chat_idempotency_keys",
      "Idempotency keys remembered now (--idempotency-keys bounds them).",
      () => idempotency.size,
    );
  }
  gauge(
    "chat_health_serving",
    "1 while grpc.health.v1 reports SERVING, else 0.",
    () => sources.serving() ? 1 : 0,
  );
  const store = new client.Histogram({
    name: "chat_store_operation_seconds",
    help: "Time the message store took per operation.",
    labelNames: ["operation"],
    buckets: [...LATENCY_BUCKETS],
    registers: [registry],
  });
  return {
    registry,
    storeLatency: {
      observe: (operation, seconds) => store.observe({ operation }, seconds),
    },
    text: () => registry.metrics(),
  };
}

const UNFED_METRICS = [
  "nodejs_gc_duration_seconds",
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_heap_bytes",
  "process_open_fds",
  "process_max_fds",
];

/** The exposition's content type (Prometheus text format 0.0.4). */
export const METRICS_CONTENT_TYPE = client.Registry.PROMETHEUS_CONTENT_TYPE;

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/**
 * grpc_server_started_total, grpc_server_handled_total and
 * grpc_server_handling_seconds, shaped as prom-client's own metrics so its
 * registry formats them (it reads `name`, `help`, `type` and `get()`).
 */
function callMetrics(calls: CallStats) {
  const labels = (m: MethodStats) => ({
    grpc_type: m.type,
    grpc_service: m.service,
    grpc_method: m.method,
  });
  const metric = (
    name: string,
    help: string,
    type: "counter" | "histogram",
    values: () => Sample[],
  ) => ({
    name,
    help,
    type,
    aggregator: "sum",
    get: () =>
      Promise.resolve({
        name,
        help,
        type,
        aggregator: "sum",
        values: values(),
      }),
    reset: () => {},
  });
  return [
    metric(
      "grpc_server_started_total",
      "RPCs started on the server.",
      "counter",
      () =>
        [...calls.methods()].map((m) => ({
          value: m.started,
          labels: labels(m),
        })),
    ),
    metric(
      "grpc_server_handled_total",
      "RPCs completed on the server, by status code.",
      "counter",
      () =>
        [...calls.methods()].flatMap((m) =>
          [...m.handled].flatMap((count, code) =>
            count === 0 ? [] : [{
              value: count,
              labels: { ...labels(m), grpc_code: CODE_NAMES[code] },
            }]
          )
        ),
    ),
    metric(
      "grpc_server_handling_seconds",
      "Time from the start of an RPC to its status, in seconds.",
      "histogram",
      () =>
        // Only methods that were called: 16 empty series each otherwise.
        [...calls.methods()].filter((m) => m.started > 0).flatMap((m) => {
          const base = labels(m);
          const out: Sample[] = [];
          let cumulative = 0;
          LATENCY_BUCKETS.forEach((le, i) => {
            cumulative += m.buckets[i];
            out.push({
              value: cumulative,
              labels: { ...base, le },
              metricName: "grpc_server_handling_seconds_bucket",
            });
          });
          cumulative += m.buckets[LATENCY_BUCKETS.length];
          out.push(
            {
              value: cumulative,
              labels: { ...base, le: "+Inf" },
              metricName: "grpc_server_handling_seconds_bucket",
            },
            {
              value: m.latencySum,
              labels: base,
              metricName: "grpc_server_handling_seconds_sum",
            },
            {
              value: cumulative,
              labels: base,
              metricName: "grpc_server_handling_seconds_count",
            },
          );
          return out;
        }),
    ),
  ];
}
