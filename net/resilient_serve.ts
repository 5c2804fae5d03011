/**
 * `Deno.serve` that outlives a failed accept.
 *
 * When the process runs out of file descriptors (a connection flood, a low
 * `ulimit -n`), `Deno.serve`'s accept loop ends: its `finished` promise
 * rejects ("Too many open files"), nothing listens on the port any more,
 * and, unhandled, the rejection ends the process (denoland/deno#10148; Go's
 * net/http and hyper sleep and accept again instead). Here the server is
 * started again on the same port after a wait (5 ms doubling to 1 s, as Go
 * does), and the connections it was serving go on meanwhile (measured: a
 * streaming response kept flowing across the restart). Connections that
 * arrive during the wait are refused, the kernel's answer to a full table
 * anyway.
 *
 * @module
 */

/** The longest wait before accepting or listening again. */
const MAX_WAIT_MS = 1000;

/**
 * The wait after a failed accept or listen that followed one of `ms` (0:
 * none before): 5 ms, doubling to 1 s, as Go's net/http waits.
 */
export function nextAcceptWait(ms: number): number {
  return Math.min(MAX_WAIT_MS, (ms || 2.5) * 2);
}

/** The options of `Deno.serve` this wrapper takes (TCP, optionally TLS). */
export type ResilientServeOptions =
  & Deno.ServeTcpOptions
  & Partial<Deno.TlsCertifiedKeyPem>;

/** A server that listens again after its accept loop failed. */
export interface ResilientServer {
  /** Where it listens (the port stays the same across restarts). */
  readonly addr: Deno.NetAddr;
  /** Stops listening, waits for requests in flight (every instance's). */
  shutdown(): Promise<void>;
}

/**
 * Serves `handler` like `Deno.serve(options, handler)`. `onListen` runs
 * once, for the first listen; `onRestart(err, waitMs)` hears of each failed
 * accept loop, and of each listen that failed again, before the wait.
 * `serve` is `Deno.serve` (tests pass their own).
 *
 * @example
 * ```ts
 * const server = serveResilient({ port: 0, hostname: "127.0.0.1" },
 *   () => new Response("ok"),
 *   (err, ms) => console.error(`${err}; listening again in ${ms} ms`));
 * await server.shutdown();
 * ```
 */
export function serveResilient(
  options: ResilientServeOptions,
  handler: Deno.ServeHandler<Deno.NetAddr>,
  onRestart: (err: unknown, waitMs: number) => void,
  serve: typeof Deno.serve = Deno.serve,
): ResilientServer {
  let current: Deno.HttpServer<Deno.NetAddr> | undefined;
  /** Failed instances draining their requests (removed once done). */
  const draining = new Set<Promise<void>>();
  let stopping = false;
  let wait = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let listenedAt = 0;

  /** The port of the first listen: a port 0 became a real one. */
  let port = options.port ?? 8000;

  const listen = (first: boolean) => {
    const server = serve({
      ...options,
      port,
      onListen: first ? options.onListen : () => {},
    }, handler);
    current = server;
    listenedAt = Date.now();
    server.finished.then(() => {}, (err) => {
      if (stopping) return;
      // Its accept loop is over: it finishes the requests it has and lets
      // its idle connections go (their descriptors are what ran out).
      const done = server.shutdown().catch(() => {});
      draining.add(done);
      void done.finally(() => draining.delete(done));
      // After a good spell of listening, the waits start short again.
      if (Date.now() - listenedAt > 5 * MAX_WAIT_MS) wait = 0;
      retry(err);
    });
    return server;
  };

  /** Waits (longer after each failure in a row), then listens again. */
  const retry = (err: unknown) => {
    wait = nextAcceptWait(wait);
    onRestart(err, wait);
    timer = setTimeout(() => {
      timer = undefined;
      if (stopping) return;
      try {
        listen(false);
      } catch (again) {
        // Still out of descriptors, or the port taken meanwhile: the
        // waits go on growing (at most one a second).
        retry(again);
      }
    }, wait);
  };

  // The first listen throws as Deno.serve does (a port in use, say).
  const addr = listen(true).addr;
  port = addr.port;
  return {
    addr,
    async shutdown() {
      stopping = true;
      clearTimeout(timer);
      await Promise.all([
        current?.shutdown().catch(() => {}),
        ...draining,
      ]);
    },
  };
}
