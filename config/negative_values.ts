/**
 * Command-line arguments as node:util `parseArgs()` should see them, shared
 * by every program's flag parser (the core, the edge, the CLI clients,
 * `deno task serve` and `deno task token`).
 *
 * parseArgs (strict) refuses `--port -1`: a value that starts with a dash
 * is "ambiguous", and it says so in three sentences that never name the
 * allowed range. `--port=-1` it takes. So a string flag followed by a
 * negative number is joined into that form, and the flag's own parser then
 * says what it allows (`--port must be an integer from 0 to 65535, got
 * "-1"`), as for any other bad value. A flag followed by anything else
 * that starts with a dash (`--room --user`) is left for parseArgs to
 * refuse as before.
 *
 * @module
 */

/** A negative number as typed: `-1`, `-0.5`, `-1e3`. */
const NEGATIVE = /^-\d/;

/**
 * `args` with each `--flag -N` of a string flag in `options` joined into
 * `--flag=-N`; everything after `--` is left as it is.
 */
export function joinNegativeValues(
  args: readonly string[],
  options: Readonly<Record<string, { type: "string" | "boolean" }>>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    if (
      next !== undefined && NEGATIVE.test(next) && arg.startsWith("--") &&
      !arg.includes("=") && Object.hasOwn(options, arg.slice(2)) &&
      options[arg.slice(2)].type === "string"
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}
