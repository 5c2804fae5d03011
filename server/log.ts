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
    debug: rank >= 2 ? (msg) => console.log(line("debug", msg)) : () => {},
  };
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

/** A logger that drops everything (tests, embedding). */
export const silentLogger: Logger = {
  error: () => {},
  warn: () => {},
  info: () => {},
  debug: () => {},
};
