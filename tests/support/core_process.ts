/**
 * Test support: cores as child processes (`server/main.ts`), so a test can
 * kill one with SIGKILL and start it again on the same port.
 */

const MAIN = new URL("../../server/main.ts", import.meta.url).pathname;

/** A core child process. */
export interface CoreProcess extends AsyncDisposable {
  readonly port: number;
  /** The process id. */
  readonly pid: number;
  /** `127.0.0.1:<port>` for grpc-js clients. */
  readonly addr: string;
  /** `http://127.0.0.1:<port>` for the edge. */
  readonly url: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Sends `signal` (default SIGKILL) and waits for the exit. Idempotent. */
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/**
 * Flags for cores under test: no "Server is alive!" chatter, a short
 * shutdown grace, history in memory (several cores never share a data dir).
 */
export const QUIET_CORE_ARGS: readonly string[] = Object.freeze([
  "--alive-interval-ms",
  "0",
  "--shutdown-grace-ms",
  "200",
  "--store",
  "memory",
]);

/** A loopback port that was free a moment ago. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Two consecutive loopback ports that were free a moment ago, below the
 * ephemeral range (Linux's default 32768-60999): a program given a port
 * and its next one (`serve --cores 2`) must not find the second taken by
 * an outgoing connection made meanwhile, such as the first core's to Redis.
 */
export function freePortPair(): number {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const taken: Deno.Listener[] = [];
    try {
      for (const p of [port, port + 1]) {
        taken.push(Deno.listen({ hostname: "127.0.0.1", port: p }));
      }
      return port;
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse)) throw err;
    } finally {
      for (const l of taken) l.close();
    }
  }
}

/**
 * Starts `server/main.ts --port <port> ...args` and resolves once it logs
 * that it listens. `port` defaults to a free one; pass the old port to bring
 * a killed core back where the edge expects it.
 */
export async function spawnCore(
  args: readonly string[] = [],
  port = freePort(),
  timeoutMs = 20_000,
): Promise<CoreProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "--port", String(port), ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  let onText = () => {};
  const collect = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      onText();
    }
  };
  const copied = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const kill = async (signal: Deno.Signal = "SIGKILL") => {
    if (!exited) {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    }
    const s = await status;
    await copied;
    return s;
  };
  const listening = new RegExp(`listening on [^\\s]*:${port}\\b`);
  const ready = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    onText = () => {
      if (listening.test(text)) {
        clearTimeout(timer);
        onText = () => {};
        resolve(true);
      }
    };
    void status.then(() => {
      clearTimeout(timer);
      resolve(listening.test(text));
    });
  });
  if (!(await ready)) {
    await kill();
    throw new Error(`core on port ${port} did not start:\n${text}`);
  }
  return {
    port,
    pid: child.pid,
    addr: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    output: () => text,
    kill,
    [Symbol.asyncDispose]: async () => {
      await kill();
    },
  };
}
