/**
 * Real measurements of this process, turned into the metrics stream's rows.
 *
 * A reading is cheap (cpuUsage is a syscall, memoryUsage reads /proc); a
 * metrics stream takes one per interval and reports rates as the difference
 * from its previous reading, so every stream sees its own interval exactly.
 */
import process from "node:process";
import type { ChatHub } from "./rooms/hub.ts";

export interface Reading {
  readonly atMs: number;
  /** User + system CPU time of the process, in microseconds. */
  readonly cpuMicros: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly callsStarted: number;
  readonly messagesPublished: number;
  readonly deliveries: number;
  readonly dropped: number;
}

export interface MetricRow {
  name: string;
  value: number;
  labels: Record<string, string>;
}

export function takeReading(
  hub: ChatHub<unknown>,
  nowMs = performance.now(),
): Reading {
  const cpu = process.cpuUsage();
  const mem = Deno.memoryUsage();
  const s = hub.stats;
  return {
    atMs: nowMs,
    cpuMicros: cpu.user + cpu.system,
    rssBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    callsStarted: s.callsStarted,
    messagesPublished: s.messagesPublished,
    deliveries: s.deliveries,
    dropped: s.dropped,
  };
}

const MIB = 1024 * 1024;

/** The rows for one interval, from two readings of the same process. */
export function metricRows(
  prev: Reading,
  now: Reading,
  hub: ChatHub<unknown>,
  labels: Readonly<Record<string, string>>,
): MetricRow[] {
  const seconds = Math.max((now.atMs - prev.atMs) / 1000, 1e-3);
  const rate = (a: number, b: number) => (b - a) / seconds;
  const row = (
    name: string,
    value: number,
    extra: Record<string, string> = {},
  ): MetricRow => ({
    name,
    value,
    labels: { ...labels, ...extra },
  });
  return [
    // Percent of one core over the interval (can exceed 100 with helper threads).
    row(
      "cpu_usage",
      (100 * (now.cpuMicros - prev.cpuMicros)) / (seconds * 1e6),
      { unit: "percent" },
    ),
    row("memory_usage", now.rssBytes / MIB, { type: "resident", unit: "MiB" }),
    row("heap_used", now.heapUsedBytes / MIB, { type: "heap", unit: "MiB" }),
    row("requests_per_second", rate(prev.callsStarted, now.callsStarted), {
      endpoint: "grpc",
    }),
    row(
      "messages_per_second",
      rate(prev.messagesPublished, now.messagesPublished),
    ),
    row("deliveries_per_second", rate(prev.deliveries, now.deliveries)),
    row("dropped_messages_total", now.dropped),
    row("active_streams", hub.stats.activeStreams),
    row("subscribers", hub.subscriberCount),
    row("rooms", hub.roomCount),
    // 0 while the history store (or the Redis broker) fails: the core is
    // degraded, publishes answer UNAVAILABLE.
    row("store_up", hub.store.status().state === "ok" ? 1 : 0, {
      store: hub.store.kind,
    }),
  ];
}
