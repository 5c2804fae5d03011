/**
 * The one parser of numeric flags and environment variables, shared by the
 * config parsers of the core, the edge, the CLI clients, the benchmark and
 * `deno task serve`, so that every program accepts the same spellings and
 * says the same thing about a bad value.
 *
 * Strict on purpose: `Number()` alone takes "", " ", "0x10", "1e3" and
 * "Infinity", each of which has started a server with a setting nobody
 * meant.
 *
 * @example
 * ```ts
 * const port = parseNumberFlag("--port", "8080", { min: 0, max: 65535 });
 * ```
 *
 * @module
 */

/** The accepted range; `integer` defaults to true. */
export interface NumberRange {
  min: number;
  max?: number;
  integer?: boolean;
}

const INTEGER = /^\d+$/;
const DECIMAL = /^\d+(\.\d+)?$/;

/**
 * Parses `raw` (decimal digits; a fraction only when `integer` is false)
 * within `range`, or throws `error` (default RangeError) with a message
 * naming `name`, the range and the value.
 */
export function parseNumberFlag(
  name: string,
  raw: string,
  range: NumberRange,
  error: new (message: string) => Error = RangeError,
): number {
  const { min, max = Number.MAX_SAFE_INTEGER, integer = true } = range;
  const text = raw.trim();
  const n = Number(text);
  if (
    !(integer ? INTEGER : DECIMAL).test(text) || !Number.isFinite(n) ||
    (integer && !Number.isSafeInteger(n)) || n < min || n > max
  ) {
    const kind = integer ? "an integer" : "a number";
    const bounds = max === Number.MAX_SAFE_INTEGER
      ? `>= ${min}`
      : `from ${min} to ${max}`;
    throw new error(`${name} must be ${kind} ${bounds}, got "${raw}"`);
  }
  return n;
}
