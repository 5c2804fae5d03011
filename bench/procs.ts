/**
 * Processes under test: start a server command pinned to a CPU in its own
 * process group, wait until its port accepts, stop the whole group.
 *
 * `{port}` in the command is replaced by a free loopback port (and
 * `{upstream}` by the core's URL for the edge), the same convention as the
 * shared compare.sh, so any server can be measured: the core, the seed's Go
 * server, the core under its supervisor.
 *
 * @module
 */

/** A running server process group. */
export interface ServerProcess {
  readonly pid: number;
  readonly port: number;
  /** False once the process has exited (e.g. crashed mid-run). */
  alive(): boolean;
  /** SIGTERM to the group, SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Whether `taskset` can pin here (util-linux present, CPU 1 exists). */
export function canPin(): boolean {
  try {
    const out = new Deno.Command("taskset", {
      args: ["-c", "1", "true"],
      stderr: "null",
    })
      .outputSync();
    return out.success && navigator.hardwareConcurrency >= 2;
  } catch {
    return false;
  }
}

/** A loopback port that was free a moment ago. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** `taskset -c cpu` prefix, or nothing when `cpu` is undefined. */
export function pinArgs(cpu: number | undefined): string[] {
  return cpu === undefined ? [] : ["taskset", "-c", String(cpu)];
}

async function accepts(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts `command` (a shell line) with `{port}` and `vars` substituted, on
 * `cpu`, logging to `logPath`; resolves once the port accepts connections.
 * A core started here keeps its history in a fresh directory of its own
 * (`CHAT_DATA_DIR`), removed when it stops, unless the environment names one:
 * the default `./data` would carry one run's history into the next, whose
 * start-up replays it (the idle memory read 12-20 MB higher after a few runs),
 * and would write into the user's own data.
 */
export async function startServer(
  command: string,
  opts: {
    cpu?: number;
    logPath: string;
    vars?: Record<string, string>;
    timeoutMs?: number;
  },
): Promise<ServerProcess> {
  const port = freePort();
  let line = command.replaceAll("{port}", String(port));
  for (const [k, v] of Object.entries(opts.vars ?? {})) {
    line = line.replaceAll(`{${k}}`, v);
  }
  const log = await Deno.open(opts.logPath, {
    create: true,
    write: true,
    truncate: true,
  });
  const dataDir = Deno.env.get("CHAT_DATA_DIR") === undefined
    ? await Deno.makeTempDir({ prefix: "bench-data-" })
    : undefined;
  const child = new Deno.Command("setsid", {
    args: [...pinArgs(opts.cpu), "bash", "-c", `exec ${line}`],
    env: dataDir === undefined ? undefined : { CHAT_DATA_DIR: dataDir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Both streams into one log; the file closes when both have ended.
  const w = log.writable.getWriter();
  const copy = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) await w.write(chunk);
  };
  const copied = Promise.all([copy(child.stdout), copy(child.stderr)])
    .finally(() => w.close().catch(() => {}));
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const stop = async (graceMs = 5000) => {
    if (!exited) {
      try {
        Deno.kill(-child.pid, "SIGTERM");
      } catch { /* already gone */ }
      const t = setTimeout(() => {
        try {
          Deno.kill(-child.pid, "SIGKILL");
        } catch { /* already gone */ }
      }, graceMs);
      await status;
      clearTimeout(t);
    }
    await copied;
    if (dataDir !== undefined) {
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  };
  while (!(await accepts(port))) {
    if (exited || Date.now() > deadline) {
      await stop(0);
      throw new Error(
        `"${line}" did not listen on ${port} (see ${opts.logPath})`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { pid: child.pid, port, stop, alive: () => !exited };
}
