/**
 * Test support for start-up tests: run a `deno` command in the project root
 * to its end, hold a port, split output into lines.
 */

/** The project root. */
export const ROOT = new URL("../..", import.meta.url).pathname;

/** What a finished process printed and how it exited. */
export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

const decoder = new TextDecoder();

/** Runs `deno <args>` in the project root to its end (at most `timeoutMs`). */
export async function runDeno(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<Finished> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** The non-empty lines of a text. */
export const lines = (text: string): string[] =>
  text.split("\n").filter((l) => l.trim());

/** A port that something else listens on until disposed. */
export function takenPort(): Deno.Listener & { port: number } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return Object.assign(listener, {
    port: (listener.addr as Deno.NetAddr).port,
  });
}
