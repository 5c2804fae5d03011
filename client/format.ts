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

/**
 * A chat line: `[room] user: content`, with `*` marking system messages.
 *
 * With `color`, each user's name gets a colour of its own (the same one every
 * time, from a hash of the name) and system lines are dimmed magenta, so a
 * busy room reads at a glance. Control characters other users put in a
 * message are shown escaped, never sent to the terminal.
 */
export function formatMessage(m: Message, color = false): string {
  const mark = m.type === MessageType.SYSTEM ? "*" : "";
  const room = m.room ? `[${clean(m.room)}] ` : "";
  const user = clean(m.user);
  const content = clean(m.content);
  if (!color) return `${room}${mark}${user}: ${content}`;
  if (m.type !== MessageType.CHAT) {
    return sgr(SYSTEM, `${room}${mark}${user}: ${content}`);
  }
  return `${sgr(DIM, room)}${sgr(userColor(user), user)}: ${content}`;
}

/** A line the client writes about itself (reconnecting, not sent, ...). */
export function formatNote(text: string, color = false): string {
  return color ? sgr(NOTE, text) : text;
}

const DIM = "2";
const SYSTEM = "2;35";
const NOTE = "33";
const USER_COLORS = ["31", "32", "34", "36", "91", "92", "94", "96"];

function sgr(code: string, text: string): string {
  return text === "" ? "" : `\x1b[${code}m${text}\x1b[0m`;
}

function userColor(user: string): string {
  let h = 0;
  for (let i = 0; i < user.length; i++) h = (h * 31 + user.charCodeAt(i)) >>> 0;
  return USER_COLORS[h % USER_COLORS.length];
}

function clean(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\x00-\x08\x0a-\x1f\x7f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
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
