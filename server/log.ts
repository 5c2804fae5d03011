import { LineRation } from "../limits/line_ration.ts";

/**
 * A tiny leveled logger for lifecycle events (never per message).
 *
 * "text" writes `<time> core <message>` lines for people; "json" writes one
 * object per line (`time`, `level`, `component`, `msg`, and `error` with
 * the cause's stack) for log collectors. Errors and warnings go to stderr,
 * the rest to stdout, in both formats.
 */
export interface Logger {
  error(msg: string, err?: unknown): void;
  /**
   * Something repaired or skipped that an operator should know of (the
   * history store's torn tail cut off, a failed compaction); stderr.
   */
  warn(msg: string): void;
  info(msg: string): void;
  /**
   * An info line written at every level, `--log-level error` included:
   * where the process listens, which the supervisor and `deno task serve`
   * wait for (without it they never see the core ready).
   */
  notice(msg: string): void;
  debug(msg: string): void;
}

const RANK = { error: 0, info: 1, debug: 2 } as const;

/**
 * One `--log-format json` line: the shape every process here writes (the
 * core's logger, the supervisor's lifecycle lines, `deno task serve`), so
 * a collector parses one format; `fields` are added after `msg`.
 */
export function jsonLogLine(
  level: string,
  component: string,
  msg: string,
  err?: unknown,
  fields?: Record<string, unknown>,
): string {
  return JSON.stringify({
    time: new Date().toISOString(),
    level,
    component,
    msg,
    ...(err === undefined ? {} : { error: describe(err) }),
    ...fields,
  });
}

/** How log lines are written. */
export type LogFormat = "text" | "json";

export function createLogger(
  level: keyof typeof RANK,
  prefix = "core",
  format: LogFormat = "text",
): Logger {
  const rank = RANK[level];
  const stamp = () => new Date().toISOString();
  const line = format === "json"
    ? (lvl: string, msg: string, err?: unknown) =>
      jsonLogLine(lvl, prefix, msg, err)
    : (lvl: string, msg: string) =>
      `${stamp()} ${prefix} ${lvl === "info" ? "" : `${lvl} `}${msg}`;
  return {
    error: format === "json"
      ? (msg, err) => console.error(line("error", msg, err))
      : (msg, err) => console.error(`${line("ERROR", msg)}`, err ?? ""),
    warn: (msg) =>
      console.error(line(format === "json" ? "warn" : "WARN", msg)),
    info: rank >= 1 ? (msg) => console.log(line("info", msg)) : () => {},
    notice: (msg) => console.log(line("info", msg)),
    debug: rank >= 2 ? (msg) => console.log(line("debug", msg)) : () => {},
  };
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

/** grpc-js's own lines that get a line each, per second; see grpcJsLogger(). */
export const GRPC_JS_LINES_PER_SECOND = 20;

// C0 controls and DEL, shown escaped in text lines (JSON escapes them).
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/g;
const escapeControl = (c: string) =>
  `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;

/**
 * grpc-js's line about a header it could not take as metadata, for a
 * header that carries a credential: it names the value twice (a token with
 * a tab after `Bearer`, say, which is still a good token). Greedy up to the
 * last "For more information", so a value holding those words is cut too.
 */
const CREDENTIAL_ENTRY =
  /(Failed to add metadata entry (?:authorization|proxy-authorization|cookie): )[\s\S]*(\. For more information)/g;
const CREDENTIAL_NOT_LOGGED =
  "$1(a value that is not valid metadata; not logged: it is a credential)$2";

/**
 * grpc-js's own log lines (for its `setLogger()`), through `log` as
 * warnings, at most {@linkcode GRPC_JS_LINES_PER_SECOND} a second, the rest
 * summed up in one line when their second ends (or at `close()`). A client
 * causes most of them: grpc-js logs every request header it cannot take as
 * metadata (a value past ASCII, a control character), once per request, so
 * raw they let one client fill the log, and broke `--log-format json`.
 * Control characters in them are escaped, and the value of a credential
 * header (`authorization`) is left out: a token does not belong in a log.
 */
export function grpcJsLogger(
  log: Logger,
  now?: () => number,
): Pick<Console, "error" | "info" | "debug"> & { close(): void } {
  const ration = new LineRation(
    GRPC_JS_LINES_PER_SECOND,
    (n) => log.warn(`grpc-js: ${n} more lines in that second, not logged`),
    now,
  );
  const line = (...args: unknown[]) => {
    if (!ration.take()) return;
    const text = args.map((a) => describe(a)).join(" ")
      .replace(CREDENTIAL_ENTRY, CREDENTIAL_NOT_LOGGED);
    log.warn(`grpc-js: ${text.replace(CONTROL, escapeControl)}`);
  };
  return { error: line, info: line, debug: line, close: () => ration.close() };
}

/** A logger that drops everything (tests, embedding). */
export const silentLogger: Logger = {
  error: () => {},
  warn: () => {},
  info: () => {},
  notice: () => {},
  debug: () => {},
};
