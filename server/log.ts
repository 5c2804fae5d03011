/**
 * A tiny leveled logger for lifecycle events (never per message).
 */
export interface Logger {
  error(msg: string, err?: unknown): void;
  info(msg: string): void;
  debug(msg: string): void;
}

const RANK = { error: 0, info: 1, debug: 2 } as const;

export function createLogger(
  level: keyof typeof RANK,
  prefix = "core",
): Logger {
  const rank = RANK[level];
  const stamp = () => new Date().toISOString();
  return {
    error: (msg, err) =>
      console.error(`${stamp()} ${prefix} ERROR ${msg}`, err ?? ""),
    info: rank >= 1
      ? (msg) => console.log(`${stamp()} ${prefix} ${msg}`)
      : () => {},
    debug: rank >= 2
      ? (msg) => console.log(`${stamp()} ${prefix} debug ${msg}`)
      : () => {},
  };
}

/** A logger that drops everything (tests, embedding). */
export const silentLogger: Logger = {
  error: () => {},
  info: () => {},
  debug: () => {},
};
