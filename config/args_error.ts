/**
 * node:util `parseArgs()`'s refusal as one line, for every program's flag
 * parser (the core, the edge, `deno task serve` and `deno task token`).
 *
 * A string flag followed by another flag (`--port --host 0.0.0.0`) is
 * "ambiguous" to parseArgs, which says so in three sentences on three
 * lines; every other refusal is one line already. A bad flag is one line
 * on stderr, so that case becomes `--port needs a value`.
 *
 * @module
 */

const AMBIGUOUS = /^Option '(-[^' ]+)' argument is ambiguous/;

/** The one line to print for an error thrown by `parseArgs()`. */
export function argsErrorLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const flag = AMBIGUOUS.exec(message)?.[1];
  if (flag !== undefined) return `${flag} needs a value`;
  return message.split("\n")[0];
}
