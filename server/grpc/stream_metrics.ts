/**
 * StreamMetrics (server streaming): this server's measurements every
 * `interval_seconds` (default 1 s), labelled with the instance ids.
 *
 * A tick that finds the client not reading is skipped rather than queued:
 * stale telemetry is worth less than bounded memory.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServerWritableStream } from "@grpc/grpc-js";
import {
  type Metric,
  MetricSchema,
  type MetricsRequest,
} from "../../gen/chat_pb.ts";
import { checkInstanceId, metricsIntervalMs } from "../rooms/validate.ts";
import { metricRows, takeReading } from "../telemetry.ts";
import type { HandlerContext } from "./context.ts";
import { openStream } from "./stream.ts";
import { endAtExpiry, withCaller } from "./caller.ts";

type Call = ServerWritableStream<MetricsRequest, Metric>;

/**
 * With auth on, any valid token may read the metrics (no room or scope);
 * the stream counts against the rate limit and `--max-subscriptions`.
 */
export function streamMetricsHandler(ctx: HandlerContext) {
  return withCaller(ctx, (call: Call, err) => call.emit("error", err), (
    call,
    caller,
  ): void => {
    const stream = openStream(
      call,
      ctx,
      (err) => err ? call.emit("error", err) : call.end(),
    );
    endAtExpiry(ctx, stream, caller);
    let intervalMs: number;
    try {
      intervalMs = metricsIntervalMs(call.request.intervalSeconds);
      checkInstanceId(call.request.instanceId);
      // A long stream like a subscription: one rate token and one of the
      // caller's subscription places while it runs.
      stream.defer(ctx.access.allowMetrics(caller));
    } catch (err) {
      stream.finish(err);
      return;
    }
    const labels = {
      instance: call.request.instanceId || ctx.config.instanceId,
      server_instance: ctx.config.instanceId,
      pid: String(Deno.pid),
    };
    let paused = false;
    let prev = takeReading(ctx.hub);
    const onDrain = () => (paused = false);
    call.on("drain", onDrain);
    const timer = setInterval(() => {
      const now = takeReading(ctx.hub);
      const rows = metricRows(prev, now, ctx.hub, labels);
      prev = now;
      if (paused) return;
      const timestamp = timestampFromMs(Date.now());
      for (const row of rows) {
        if (!call.write(create(MetricSchema, { ...row, timestamp }))) {
          paused = true;
        }
      }
    }, intervalMs);
    stream.defer(() => {
      clearInterval(timer);
      call.off("drain", onDrain);
    });
  });
}
