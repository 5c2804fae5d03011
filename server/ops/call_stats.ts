/**
 * Calls by method and status code, with latency histograms, in arrays
 * allocated once per method.
 *
 * Why not prom-client's own Counter and Histogram here: their `observe()`
 * and `inc()` build a label-hash string on every call, which the direct
 * unary path (a few microseconds per call) would feel. Recording here is a
 * map lookup and a few array increments; prom-client turns the arrays into
 * text only when /metrics is scraped (metrics.ts).
 */
import { status } from "@grpc/grpc-js";

/** Upper bounds of the latency buckets, in seconds: 0.5 ms doubling to 8 s. */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze(
  Array.from({ length: 15 }, (_, i) => 0.0005 * 2 ** i),
);

/**
 * The gRPC status codes, 0 to 16, by their canonical names (grpc-js's
 * `status` enum maps numbers back to names).
 */
export const CODE_NAMES: readonly string[] = Object.freeze(
  Array.from({ length: 17 }, (_, code) => status[code]),
);

/** The four gRPC call kinds, as Prometheus labels them (`grpc_type`). */
export type CallType =
  | "unary"
  | "client_stream"
  | "server_stream"
  | "bidi_stream";

/** One method's counters: fixed-size, allocated at registration. */
export interface MethodStats {
  readonly service: string;
  readonly method: string;
  readonly type: CallType;
  /** Calls started (both paths). */
  started: number;
  /** Calls ended, by status code (index = code). */
  readonly handled: Float64Array;
  /** Latency bucket counts, not cumulative; the last one is +Inf. */
  readonly buckets: Float64Array;
  /** Sum of latencies, in seconds. */
  latencySum: number;
}

/** The call table of one server: a row per registered method path. */
export class CallStats {
  readonly #methods = new Map<string, MethodStats>();

  /** Adds a method, e.g. `("/chat.ChatService/Chat", "bidi_stream")`. */
  register(path: string, type: CallType): void {
    if (this.#methods.has(path)) return;
    const slash = path.lastIndexOf("/");
    this.#methods.set(path, {
      service: path.slice(1, slash),
      method: path.slice(slash + 1),
      type,
      started: 0,
      handled: new Float64Array(CODE_NAMES.length),
      buckets: new Float64Array(LATENCY_BUCKETS.length + 1),
      latencySum: 0,
    });
  }

  /** Adds every method of a grpc-js service definition. */
  registerService(
    definition: Record<
      string,
      { path: string; requestStream: boolean; responseStream: boolean }
    >,
  ): void {
    for (const m of Object.values(definition)) {
      this.register(
        m.path,
        m.requestStream
          ? (m.responseStream ? "bidi_stream" : "client_stream")
          : (m.responseStream ? "server_stream" : "unary"),
      );
    }
  }

  /** Counts a call as started. Unknown paths are ignored. */
  start(path: string): void {
    const stats = this.#methods.get(path);
    if (stats !== undefined) stats.started++;
  }

  /**
   * Counts a finished call with its status code and its duration in
   * milliseconds. Allocates nothing; unknown paths are ignored.
   */
  end(path: string, code: number, durationMs: number): void {
    const stats = this.#methods.get(path);
    if (stats === undefined) return;
    stats.handled[code >= 0 && code < CODE_NAMES.length ? code : 2]++;
    const seconds = durationMs / 1000;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]) i++;
    stats.buckets[i]++;
    stats.latencySum += seconds;
  }

  /** Every registered method, for the scrape. */
  methods(): IterableIterator<MethodStats> {
    return this.#methods.values();
  }

  /** One method's row, for tests and the scrape. */
  get(path: string): MethodStats | undefined {
    return this.#methods.get(path);
  }
}
