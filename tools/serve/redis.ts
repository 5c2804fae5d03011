/**
 * A local `redis-server` child process, for `deno task serve --cores N`, the
 * tests and the broker benchmarks.
 *
 * Redis has no "port 0": the port is one that was free a moment ago (taken
 * from `Deno.listen` on port 0, then closed), so nothing depends on a fixed
 * port. Without `persist` it runs with `--save '' --appendonly no`: a restart
 * loses everything, which is what the broker's epoch handling is tested
 * against.
 *
 * @module
 */

/** Where Debian's redis-server package installs the binary. */
export const REDIS_SERVER_BIN = "redis-server";

/** Options of {@linkcode startRedisServer}. */
export interface RedisServerOptions {
  /** TCP port on 127.0.0.1; default: one that was free a moment ago. */
  port?: number;
  /** Keep an append-only file in this directory (survives restarts). */
  persistDir?: string;
  /**
   * Keep RDB snapshots in this directory, written only when asked (`SAVE`):
   * a restart loads the last one, i.e. Redis comes back with part of its
   * data, as its default persistence does after a crash.
   */
  snapshotDir?: string;
  /** How long to wait for the port to accept connections. */
  timeoutMs?: number;
  /** Require this password (`requirepass`); `url` carries it. */
  password?: string;
  /** Also serve TLS on a port of its own (`tlsUrl`), with this certificate. */
  tls?: { certFile: string; keyFile: string };
}

/** A running redis-server. */
export interface RedisServer extends AsyncDisposable {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** `rediss://127.0.0.1:<tls port>` (with the password), when `tls` was given. */
  readonly tlsUrl?: string;
  readonly pid: number;
  /** Resolves when it exits, for whatever reason. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Stops it: SIGTERM (or `signal`), then waits for the exit. Idempotent. */
  stop(signal?: Deno.Signal): Promise<void>;
}

/** Whether `redis-server` can be run here. */
export async function redisServerInstalled(): Promise<boolean> {
  try {
    const out = await new Deno.Command(REDIS_SERVER_BIN, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function answersPing(port: number): Promise<boolean> {
  let conn: Deno.Conn | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    // Up: PONG, or a refusal when it wants a password.
    const reply = n === null
      ? ""
      : new TextDecoder().decode(buf.subarray(0, n));
    return reply.startsWith("+PONG") || reply.startsWith("-NOAUTH");
  } catch {
    return false;
  } finally {
    conn?.close();
  }
}

/**
 * Starts redis-server on 127.0.0.1 and resolves once it answers PING.
 *
 * @example
 * ```ts
 * await using redis = await startRedisServer();
 * console.log(redis.url);
 * ```
 */
export async function startRedisServer(
  options: RedisServerOptions = {},
): Promise<RedisServer> {
  const port = options.port ?? freePort();
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
  ];
  if (options.persistDir) {
    args.push(
      "--dir",
      options.persistDir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
    );
  } else {
    args.push("--appendonly", "no");
    if (options.snapshotDir) args.push("--dir", options.snapshotDir);
  }
  if (options.password !== undefined) {
    args.push("--requirepass", options.password);
  }
  const tlsPort = options.tls ? freePort() : undefined;
  if (options.tls) {
    args.push(
      "--tls-port",
      String(tlsPort),
      "--tls-cert-file",
      options.tls.certFile,
      "--tls-key-file",
      options.tls.keyFile,
      "--tls-auth-clients",
      "no",
    );
  }
  const child = new Deno.Command(REDIS_SERVER_BIN, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!exited) {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    }
    await status;
    await stderr;
  };
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  while (!(await answersPing(port))) {
    if (exited || Date.now() > deadline) {
      await stop("SIGKILL");
      throw new Error(
        `redis-server did not start on port ${port}: ${(await stderr).trim()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const auth = options.password !== undefined
    ? `:${encodeURIComponent(options.password)}@`
    : "";
  return {
    port,
    url: `redis://${auth}127.0.0.1:${port}`,
    ...(tlsPort ? { tlsUrl: `rediss://${auth}127.0.0.1:${tlsPort}` } : {}),
    pid: child.pid,
    exited: status,
    stop,
    [Symbol.asyncDispose]: () => stop(),
  };
}
