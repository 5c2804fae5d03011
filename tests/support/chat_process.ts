/**
 * `deno task chat` as a child process with its stdin held open, so a test can
 * type lines, wait for what the session prints, and end it like Ctrl-D.
 *
 * @module
 */

const root = new URL("../..", import.meta.url).pathname;

/** A running chat CLI. */
export interface ChatProcess {
  /** Everything printed to stdout so far. */
  readonly stdout: string;
  /** Sends one line, as typed. */
  type(line: string): Promise<void>;
  /** Waits until stdout matches `pattern` (15 s at most). */
  waitFor(pattern: RegExp | string, what?: string): Promise<void>;
  /**
   * Stops reading the child's stdout until the promise resolves: once the
   * pipe is full its writes block, and so does its reading from the server
   * (a slow client).
   */
  stall(until: Promise<unknown>): void;
  /** Ends input (Ctrl-D) and waits for the exit. */
  finish(): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** Starts `deno task chat args...` with `env` added to the environment. */
export function spawnChat(
  args: string[],
  env: Record<string, string> = {},
): ChatProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "chat", ...args],
    cwd: root,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  let stdout = "";
  let wake = () => {};
  let stalled: Promise<unknown> = Promise.resolve();
  const reading = (async () => {
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      stdout += chunk;
      wake();
      await stalled;
    }
  })();
  const stderr = new Response(child.stderr).text();
  return {
    get stdout() {
      return stdout;
    },
    stall(until) {
      stalled = until;
    },
    type: (line) => writer.write(new TextEncoder().encode(`${line}\n`)),
    async waitFor(pattern, what = String(pattern)) {
      const test = () =>
        typeof pattern === "string"
          ? stdout.includes(pattern)
          : pattern.test(stdout);
      const until = Date.now() + 15_000;
      while (!test()) {
        const left = until - Date.now();
        if (left <= 0) {
          throw new Error(`timed out waiting for ${what}; stdout:\n${stdout}`);
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, Math.min(left, 200));
        });
        clearTimeout(timer);
      }
    },
    async finish() {
      await writer.close().catch(() => {});
      const { code } = await child.status;
      await reading;
      return { code, stdout, stderr: await stderr };
    },
  };
}
