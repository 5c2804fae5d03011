/**
 * Command-line parsing for the two CLI clients, as pure functions of
 * `(args, env)` so tests can drive them without a process.
 *
 * Each parser returns a frozen, complete config or throws {@link UsageError}
 * with a message meant for the terminal; out-of-range numbers are rejected
 * here rather than surfacing later as odd timer behaviour.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseNumberFlag } from "../config/number_flag.ts";
import { defaultExampleOptions, type ExampleOptions } from "./examples.ts";

/** A bad flag or value; `main` prints the message and the usage, exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The server address when neither `--addr` nor `ADDR` is given. */
export const DEFAULT_ADDR = "127.0.0.1:50051";

/** Config of `deno task client`. */
export interface ExamplesConfig extends ExampleOptions {
  addr: string;
  help: boolean;
}

/** Config of `deno task chat`. */
export interface ChatConfig {
  addr: string;
  room: string;
  user: string;
  bidi: boolean;
  /** After EOF, how long to wait for our own messages to come back. */
  flushMs: number;
  help: boolean;
}

function num(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
): number {
  if (raw === undefined) return fallback;
  return parseNumberFlag(`--${name}`, raw, { min }, UsageError);
}

function addrOf(flag: string | undefined, env: string | undefined): string {
  const addr = flag ?? (env || DEFAULT_ADDR);
  if (!/^[^\s:]+:\d{1,5}$/.test(addr) && !/^\[[^\]]+\]:\d{1,5}$/.test(addr)) {
    throw new UsageError(`--addr must be host:port, got "${addr}"`);
  }
  return addr;
}

function parse(
  args: string[],
  options: Record<string, { type: "string" | "boolean" }>,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false })
      .values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Parses `deno task client` flags; `envAddr` is `$ADDR`. */
export function parseExamplesArgs(
  args: string[],
  envAddr?: string,
): ExamplesConfig {
  const s = { type: "string" } as const;
  const v = parse(args, {
    addr: s,
    "batch-delay-ms": s,
    "chat-interval-ms": s,
    "chat-count": s,
    "metrics-interval": s,
    "metrics-count": s,
    "linger-ms": s,
    "timeout-ms": s,
    help: { type: "boolean" },
  }) as Record<string, string | undefined>;
  const d = defaultExampleOptions;
  return Object.freeze({
    addr: addrOf(v.addr, envAddr),
    batchDelayMs: num("batch-delay-ms", v["batch-delay-ms"], d.batchDelayMs, 0),
    chatIntervalMs: num(
      "chat-interval-ms",
      v["chat-interval-ms"],
      d.chatIntervalMs,
      0,
    ),
    chatCount: num("chat-count", v["chat-count"], d.chatCount, 1),
    metricsIntervalSeconds: num(
      "metrics-interval",
      v["metrics-interval"],
      d.metricsIntervalSeconds,
      1,
    ),
    metricsCount: num("metrics-count", v["metrics-count"], d.metricsCount, 1),
    lingerMs: num("linger-ms", v["linger-ms"], d.lingerMs, 0),
    timeoutMs: num("timeout-ms", v["timeout-ms"], d.timeoutMs, 1),
    help: Boolean(v.help),
  });
}

/** Parses `deno task chat` flags; `envAddr` is `$ADDR`. */
export function parseChatArgs(args: string[], envAddr?: string): ChatConfig {
  const s = { type: "string" } as const;
  const v = parse(args, {
    addr: s,
    room: s,
    user: s,
    "flush-ms": s,
    bidi: { type: "boolean" },
    help: { type: "boolean" },
  }) as Record<string, string | boolean | undefined>;
  const help = Boolean(v.help);
  const room = (v.room as string | undefined)?.trim() ?? "";
  const user = (v.user as string | undefined)?.trim() ?? "";
  if (!help && (room === "" || user === "")) {
    throw new UsageError("--room and --user are required");
  }
  return Object.freeze({
    addr: addrOf(v.addr as string | undefined, envAddr),
    room,
    user,
    bidi: Boolean(v.bidi),
    flushMs: num("flush-ms", v["flush-ms"] as string | undefined, 2000, 0),
    help,
  });
}

/** Usage text of `deno task client`. */
export const EXAMPLES_USAGE =
  `usage: deno task client [--addr host:port] [options]
Runs the seed's five examples (unary, subscribe, upload, bidi chat, metrics)
and prints one summary line per RPC; exits 1 if any failed.
  --addr host:port         server (default $ADDR or ${DEFAULT_ADDR})
  --batch-delay-ms N       pause between upload messages (default ${defaultExampleOptions.batchDelayMs}; seed 200)
  --chat-interval-ms N     pause between bidi messages (default ${defaultExampleOptions.chatIntervalMs}; seed 3000)
  --chat-count N           bidi messages to send (default ${defaultExampleOptions.chatCount})
  --metrics-interval S     interval_seconds asked of StreamMetrics (default ${defaultExampleOptions.metricsIntervalSeconds})
  --metrics-count N        metrics to read (default ${defaultExampleOptions.metricsCount})
  --linger-ms N            subscriber wait for late messages (default ${defaultExampleOptions.lingerMs})
  --timeout-ms N           per-call deadline (default ${defaultExampleOptions.timeoutMs})`;

/** Usage text of `deno task chat`. */
export const CHAT_USAGE =
  `usage: deno task chat --room R --user U [--bidi] [--addr host:port]
Interactive chat: each line of stdin is sent to room R as user U (SendMessage,
or the Chat stream with --bidi); the room is shown live. Ctrl-D leaves.
  --addr host:port   server (default $ADDR or ${DEFAULT_ADDR})
  --flush-ms N       after Ctrl-D, wait up to N ms for own messages to show (default 2000)`;
