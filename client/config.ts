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
import { decodeJwt } from "jose";
import { USER_CLAIM } from "../auth/claims.ts";
import { joinNegativeValues } from "../config/negative_values.ts";
import { parseNumberFlag } from "../config/number_flag.ts";
import { defaultExampleOptions, type ExampleOptions } from "./examples.ts";

/** A bad flag or value; `main` prints the message and the usage, exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The most `--history` asks of the server (the core keeps 1000 by default). */
export const MAX_HISTORY = 1000;

/** The server address when neither `--addr` nor `ADDR` is given. */
export const DEFAULT_ADDR = "127.0.0.1:50051";

/** How the CLIs reach the core: h2c, or TLS (`--tls`, `--tls-ca`). */
export interface TransportConfig {
  /** TLS instead of h2c (a core with --tls-cert). */
  tls: boolean;
  /** PEM file of the CA(s) the core's certificate must chain to ("" = the system's roots). */
  tlsCa: string;
}

/** Config of `deno task client`. */
export interface ExamplesConfig extends ExampleOptions, TransportConfig {
  addr: string;
  /** Bearer token sent as `authorization` on every call ("" = none). */
  token: string;
  help: boolean;
}

/** Config of `deno task chat`. */
export interface ChatConfig extends TransportConfig {
  addr: string;
  /** Bearer token sent as `authorization` on every call ("" = none). */
  token: string;
  room: string;
  user: string;
  bidi: boolean;
  /** After EOF, how long to wait for our own messages to come back. */
  flushMs: number;
  /** Recent messages of the room to show on join. */
  history: number;
  /** Colour users and system lines (a terminal without `NO_COLOR`). */
  color: boolean;
  help: boolean;
}

/** What the CLIs read from the environment (only `main.ts` reads it). */
export interface CliEnv {
  /** `$ADDR` */
  addr?: string;
  /** `$CHAT_TOKEN` */
  token?: string;
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

/**
 * `host:port` or `[v6]:port` with a port from 1 to 65535: grpc-js would
 * take `:99999` and fail every call UNAVAILABLE (ERR_SOCKET_BAD_PORT), and
 * port 0 connects nowhere, so both are usage errors here.
 */
function addrOf(flag: string | undefined, env: string | undefined): string {
  const addr = flag ?? (env || DEFAULT_ADDR);
  const port = /^(?:[^\s:\[\]]+|\[[^\s\]]+\]):(\d{1,5})$/.exec(addr)?.[1];
  if (port === undefined || Number(port) < 1 || Number(port) > 65535) {
    throw new UsageError(
      `--addr must be host:port with a port from 1 to 65535, got "${addr}"`,
    );
  }
  return addr;
}

/**
 * `--tls` and `--tls-ca FILE` (which implies `--tls`), for `addr`. grpc-js
 * sends the address's host as the TLS server name, and Deno's `node:tls`
 * refuses an IP address there (ERR_INVALID_ARG_VALUE), so every call would
 * fail UNAVAILABLE with that internal message: a usage error instead.
 */
function transportOf(
  tls: boolean,
  ca: string | undefined,
  addr: string,
): TransportConfig {
  if (ca !== undefined && ca.trim() === "") {
    throw new UsageError("--tls-ca must name a PEM file");
  }
  const on = tls || ca !== undefined;
  const host = addr.slice(0, addr.lastIndexOf(":"));
  if (on && (host.startsWith("[") || /^\d+\.\d+\.\d+\.\d+$/.test(host))) {
    throw new UsageError(
      `with --tls, --addr must name the host the certificate is for (such as localhost:50051), not an IP address, got "${addr}"`,
    );
  }
  return { tls: on, tlsCa: ca ?? "" };
}

function tokenOf(flag: string | undefined, env: string | undefined): string {
  const token = (flag ?? env ?? "").trim().replace(/^Bearer\s+/i, "");
  // A header value cannot hold control characters or spaces; say so now
  // rather than as an odd grpc-js error on the first call.
  // deno-lint-ignore no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(token)) {
    throw new UsageError("--token must be one word without spaces");
  }
  return token;
}

/**
 * The user claim of a JWT, or "" when `token` is not a JWT or names none.
 * The token is the client's own, so its payload is read without checking
 * the signature: the server checks it, and this only picks whom to post as.
 */
export function tokenUser(token: string): string {
  try {
    const user = decodeJwt(token)[USER_CLAIM];
    return typeof user === "string" ? user : "";
  } catch {
    return "";
  }
}

/**
 * Who the examples post as: `--user`, else the token's user (a core with
 * auth refuses any other), else "" for the seed's three users.
 */
function exampleUser(flag: string | undefined, token: string): string {
  if (flag === undefined) return token === "" ? "" : tokenUser(token);
  const user = flag.trim();
  if (user === "") throw new UsageError("--user must not be blank");
  return user;
}

function parse(
  args: string[],
  options: Record<string, { type: "string" | "boolean" }>,
) {
  try {
    return parseArgs({
      args: joinNegativeValues(args, options),
      options,
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    // node:util's messages run over several sentences; keep one line.
    const e = err as Error & { code?: string };
    const flag = /'(-[^' ]+)/.exec(e.message)?.[1];
    if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && flag) {
      throw new UsageError(`unknown flag ${flag}`);
    }
    if (e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && flag) {
      throw new UsageError(`${flag} needs a value`);
    }
    if (e.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      throw new UsageError(`unexpected argument ${e.message.split("'")[1]}`);
    }
    throw new UsageError(e.message.split("\n")[0]);
  }
}

/** Parses `deno task client` flags against the environment's values. */
export function parseExamplesArgs(
  args: string[],
  env: CliEnv = {},
): ExamplesConfig {
  const s = { type: "string" } as const;
  const v = parse(args, {
    addr: s,
    token: s,
    tls: { type: "boolean" },
    "tls-ca": s,
    user: s,
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
  const token = tokenOf(v.token, env.token);
  const addr = addrOf(v.addr, env.addr);
  return Object.freeze({
    addr,
    ...transportOf(Boolean(v.tls), v["tls-ca"], addr),
    token,
    user: exampleUser(v.user, token),
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

/**
 * Parses `deno task chat` flags against the environment's values; `color` is
 * whether the terminal wants colour (stdout is a terminal, `NO_COLOR` unset).
 */
export function parseChatArgs(
  args: string[],
  env: CliEnv = {},
  color = false,
): ChatConfig {
  const s = { type: "string" } as const;
  const v = parse(args, {
    addr: s,
    token: s,
    tls: { type: "boolean" },
    "tls-ca": s,
    room: s,
    user: s,
    "flush-ms": s,
    history: s,
    bidi: { type: "boolean" },
    help: { type: "boolean" },
  }) as Record<string, string | boolean | undefined>;
  const help = Boolean(v.help);
  const room = (v.room as string | undefined)?.trim() ?? "";
  const token = tokenOf(v.token as string | undefined, env.token);
  // As the examples: the token's user when --user is not given.
  const user = (v.user as string | undefined)?.trim() ?? tokenUser(token);
  if (!help && room === "") throw new UsageError("--room is required");
  if (!help && user === "") {
    throw new UsageError("--user is required (or a --token naming one)");
  }
  const addr = addrOf(v.addr as string | undefined, env.addr);
  return Object.freeze({
    addr,
    ...transportOf(Boolean(v.tls), v["tls-ca"] as string | undefined, addr),
    token,
    room,
    user,
    bidi: Boolean(v.bidi),
    flushMs: num("flush-ms", v["flush-ms"] as string | undefined, 2000, 0),
    history: Math.min(
      num("history", v.history as string | undefined, 20, 0),
      MAX_HISTORY,
    ),
    color,
    help,
  });
}

/** Usage text of `deno task client`. */
export const EXAMPLES_USAGE =
  `usage: deno task client [--addr host:port] [options]
Runs the seed's five examples (unary, subscribe, upload, bidi chat, metrics)
and prints one summary line per RPC; exits 1 if any failed.
  --addr host:port         server (default $ADDR or ${DEFAULT_ADDR})
  --token T                bearer token for every call (default $CHAT_TOKEN)
  --tls                    connect with TLS (a core with --tls-cert), trusting
                           the system's root certificates
  --tls-ca FILE            connect with TLS, trusting the CA(s) in this PEM file
  --user NAME              post and subscribe as NAME in every example (default:
                           the token's user (its sub); without a token the
                           seed's Alice, Bob and Charlie)
  --batch-delay-ms N       pause between upload messages (default ${defaultExampleOptions.batchDelayMs}; seed 200)
  --chat-interval-ms N     pause between bidi messages (default ${defaultExampleOptions.chatIntervalMs}; seed 3000)
  --chat-count N           bidi messages to send (default ${defaultExampleOptions.chatCount})
  --metrics-interval S     interval_seconds asked of StreamMetrics (default ${defaultExampleOptions.metricsIntervalSeconds})
  --metrics-count N        metrics to read (default ${defaultExampleOptions.metricsCount})
  --linger-ms N            subscriber wait for late messages (default ${defaultExampleOptions.lingerMs})
  --timeout-ms N           per-call deadline (default ${defaultExampleOptions.timeoutMs})`;

/** Usage text of `deno task chat`. */
export const CHAT_USAGE =
  `usage: deno task chat --room R [--user U] [--bidi] [--addr host:port] [options]
Interactive chat: each line of stdin is sent to room R as user U (SendMessage,
or the Chat stream with --bidi); the room's recent history, then the room live.
After a drop it reconnects with backoff and resumes where it was. Ctrl-D leaves.
  --addr host:port   server (default $ADDR or ${DEFAULT_ADDR})
  --user U           who you are (default: the token's user, its sub; required
                     without a token)
  --token T          bearer token for every call (default $CHAT_TOKEN)
  --tls              connect with TLS (a core with --tls-cert), system roots
  --tls-ca FILE      connect with TLS, trusting the CA(s) in this PEM file
  --history N        recent messages to show on join (default 20, max ${MAX_HISTORY})
  --flush-ms N       after Ctrl-D, wait up to N ms for own messages to show (default 2000)
Colours users and system lines on a terminal unless NO_COLOR is set.`;
