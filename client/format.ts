/**
 * Terminal formatting for the CLI clients: messages, metrics, timestamps and
 * gRPC errors.
 *
 * Errors are shown as `CODE_NAME: details` (e.g.
 * `UNAVAILABLE: No connection established`) because that is what a user can
 * act on; grpc-js's own `message` repeats the numeric code and a stack trace
 * says nothing about the server.
 *
 * @module
 */
import { status } from "@grpc/grpc-js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Message, MessageType, type Metric } from "../gen/chat_pb.ts";

const codeNames: Record<number, string> = Object.fromEntries(
  Object.entries(status)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v as number, k]),
);

/** The canonical name of a gRPC status code, e.g. 14 -> `UNAVAILABLE`. */
export function codeName(code: number): string {
  return codeNames[code] ?? `CODE_${code}`;
}

/**
 * One line for any error: `CODE_NAME: details` for a gRPC status, else the
 * error's message. Never a stack trace.
 */
export function formatError(err: unknown): string {
  if (err && typeof err === "object" && "code" in err) {
    const e = err as { code: unknown; details?: unknown; message?: unknown };
    if (typeof e.code === "number") {
      const details = typeof e.details === "string" && e.details !== ""
        ? e.details
        : String(e.message ?? "");
      // grpc-js appends an empty "Resolution note:" to connection errors.
      const clean = details.replace(/\s*Resolution note:\s*$/, "").trim();
      return `${codeName(e.code)}: ${clean}`;
    }
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

/** `HH:MM:SS` of a protobuf timestamp in local time, or `--:--:--`. */
export function formatTime(ts: Timestamp | undefined): string {
  if (!ts) return "--:--:--";
  const d = new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6));
  return d.toTimeString().slice(0, 8);
}

/** ISO-8601 of a protobuf timestamp, or `-` when absent. */
export function formatIso(ts: Timestamp | undefined): string {
  if (!ts) return "-";
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6))
    .toISOString();
}

/** A chat line: `[room] user: content`, with `*` marking system messages. */
export function formatMessage(m: Message): string {
  const mark = m.type === MessageType.SYSTEM ? "*" : "";
  const room = m.room ? `[${m.room}] ` : "";
  return `${room}${mark}${m.user}: ${m.content}`;
}

/** A metric line: `name = 12.34 {k=v, ...}`, labels sorted by key. */
export function formatMetric(m: Metric): string {
  const labels = Object.keys(m.labels).sort()
    .map((k) => `${k}=${m.labels[k]}`).join(", ");
  return `${m.name} = ${m.value.toFixed(2)} {${labels}}`;
}

/** The examples' summary: one `ok`/`FAILED` line per RPC, names aligned. */
export function formatSummary(
  results: readonly { rpc: string; ok: boolean; detail: string }[],
): string {
  const width = Math.max(...results.map((r) => r.rpc.length));
  return results
    .map((r) =>
      `${r.ok ? "ok    " : "FAILED"}  ${r.rpc.padEnd(width)}  ${r.detail}`
    )
    .join("\n");
}
