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

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
export async function withTempDir(
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Sets the soft file-size limit (`ulimit -f`) of the running process `pid`
 * with util-linux's `prlimit`: bytes, or "unlimited". A real way to make a
 * write fail (EFBIG) in a process that handles SIGXFSZ.
 */
export async function limitFileSize(
  pid: number,
  limit: number | "unlimited",
): Promise<void> {
  const out = await new Deno.Command("prlimit", {
    args: ["--pid", String(pid), `--fsize=${limit}:`],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`prlimit failed: ${decoder.decode(out.stderr)}`);
  }
}
