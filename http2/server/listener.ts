/**
 * Accepts h2c connections (or h2 over TLS) on a TCP port and serves each with an
 * {@linkcode H2ServerConnection}.
 *
 * @example
 * ```ts
 * const listener = listenH2({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   onStream: (stream) => stream.respond({ ":status": 200 }, { endStream: true }),
 * });
 * listener.close();
 * await listener.closed;
 * ```
 *
 * @module
 */
import {
  type ConnectionOwner,
  DEFAULT_H2_SERVER_OPTIONS,
  H2ServerConnection,
  type H2ServerOptions,
} from "./connection.ts";
import { nextAcceptWait } from "../../net/resilient_serve.ts";
import { ipKey } from "../../net/ip_key.ts";
import { ConcurrencyLimit } from "../../limits/concurrency_limit.ts";
import type { H2ServerStream, IncomingHeaders } from "./stream.ts";

/** Options of {@linkcode listenH2}. */
export interface ListenH2Options extends Partial<H2ServerOptions> {
  hostname: string;
  port: number;
  /** PEM certificate chain and key: serve h2 over TLS (ALPN h2), not h2c. */
  tls?: { cert: string; key: string };
  onStream(stream: H2ServerStream, headers: IncomingHeaders): void;
  /** An exception from `onStream` or the connection code. */
  onError?(error: unknown): void;
  /** A stream went over `requestBudget`; see ConnectionOwner. */
  onOverBudget?(stream: H2ServerStream, reason: string): void;
  /** A request's header list is above `maxHeaderListSize`; see ConnectionOwner. */
  onHeadersTooLarge?: ConnectionOwner["onHeadersTooLarge"];
  /**
   * Connections served at once at most (0 or unset: no bound); one more is
   * closed as soon as it is accepted.
   */
  maxConnections?: number;
  /**
   * Connections served at once from one client address at most (an IPv6
   * client by its /64; 0 or unset: no bound); one more is closed as soon
   * as it is accepted, as for `maxConnections`. It keeps one client from
   * taking every place under `maxConnections`, including with connections
   * that never finish their TLS handshake.
   */
  maxConnectionsPerIp?: number;
}

/** A listening h2c server. */
export interface H2Listener {
  readonly port: number;
  /** Connections open now. */
  readonly connections: number;
  /** Connections refused so far, for `maxConnections` or per IP. */
  readonly refusedConnections: number;
  /** Of those, refused for `maxConnectionsPerIp`. */
  readonly refusedPerIp: number;
  /** Connections sent GOAWAY(ENHANCE_YOUR_CALM) for rapid reset so far. */
  readonly resetFloods: number;
  /**
   * Stops accepting and sends every connection GOAWAY(NO_ERROR); open
   * streams run to their end. `closed` resolves when all are gone.
   */
  close(): void;
  /** Closes every connection now; open streams end as cancelled. */
  destroy(): void;
  readonly closed: Promise<void>;
}

/**
 * The answer to a connection over `maxConnections`: a close, nothing
 * written. Not a GOAWAY first: on a session that has just opened, a
 * GOAWAY(ENHANCE_YOUR_CALM) made grpc-js on Deno's node:http2 client spin
 * without end (its event loop blocked, its deadlines never firing), while
 * a close gets it UNAVAILABLE ("No connection established") at once.
 */
function refuse(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}

/** Whether `accept()` failed because the listener was closed. */
function isClosed(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource ||
    err instanceof Deno.errors.Interrupted;
}

/** Listens on `hostname:port` (0 picks a free port). */
export function listenH2(options: ListenH2Options): H2Listener {
  const {
    hostname,
    port,
    tls,
    onStream,
    onError,
    onOverBudget,
    onHeadersTooLarge,
    maxConnections = 0,
    maxConnectionsPerIp = 0,
    ...tuning
  } = options;
  let refused = 0;
  let refusedPerIp = 0;
  let resetFloods = 0;
  const perIp = maxConnectionsPerIp > 0
    ? new ConcurrencyLimit(maxConnectionsPerIp)
    : undefined;
  /** Each connection's place under `maxConnectionsPerIp`, given back when it closes. */
  const places = new Map<H2ServerConnection, () => void>();
  const opts: Readonly<H2ServerOptions> = Object.freeze({
    ...DEFAULT_H2_SERVER_OPTIONS,
    ...Object.fromEntries(
      Object.entries(tuning).filter(([, v]) => v !== undefined),
    ),
  });
  const listener: Deno.Listener = tls
    ? Deno.listenTls({ hostname, port, ...tls, alpnProtocols: ["h2"] })
    : Deno.listen({ hostname, port, transport: "tcp" });
  const connections = new Set<H2ServerConnection>();
  let closing = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => resolveClosed = resolve);
  const settle = () => {
    if (closing && connections.size === 0) resolveClosed();
  };
  const owner: ConnectionOwner = {
    onStream,
    onError,
    onOverBudget,
    onHeadersTooLarge,
    onResetFlood() {
      resetFloods++;
    },
    closed(connection) {
      connections.delete(connection);
      places.get(connection)?.();
      places.delete(connection);
      settle();
    },
  };

  const accepting = (async () => {
    let backoff = 0;
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
        backoff = 0;
      } catch (err) {
        if (closing || isClosed(err)) return; // the listener was closed
        // Out of file descriptors (EMFILE, ENFILE) or a connection that
        // went away before it was taken: the port must go on accepting
        // once descriptors are free again, not stop for good. Wait, as Go's
        // net/http does: 5 ms doubling to 1 s, said once per wait.
        backoff = nextAcceptWait(backoff);
        onError?.(
          new Error(
            `accept failed: ${
              (err as Error).message
            }; retrying in ${backoff} ms`,
            { cause: err },
          ),
        );
        await new Promise((r) => setTimeout(r, backoff));
        continue;
      }
      if (closing) {
        conn.close();
        continue;
      }
      if (maxConnections > 0 && connections.size >= maxConnections) {
        refused++;
        refuse(conn);
        continue;
      }
      let place: (() => void) | undefined;
      if (perIp !== undefined) {
        const addr = conn.remoteAddr as Deno.NetAddr;
        place = perIp.acquire(ipKey(addr.hostname));
        if (place === undefined) {
          refused++;
          refusedPerIp++;
          refuse(conn);
          continue;
        }
      }
      try {
        (conn as Deno.TcpConn).setNoDelay?.(true);
      } catch {
        // the peer is gone already; the read loop will see it
      }
      let connection: H2ServerConnection;
      try {
        connection = new H2ServerConnection(conn, opts, owner);
      } catch (err) {
        place?.();
        refuse(conn);
        onError?.(err);
        continue;
      }
      connections.add(connection);
      if (place !== undefined) places.set(connection, place);
      connection.serve().catch((err) => {
        onError?.(err);
        // It failed before its read loop could close the socket and report
        // the close: both here, so its places are free again (a later
        // report finds nothing left to release).
        refuse(conn);
        owner.closed(connection);
      });
    }
  })();

  const stopAccepting = () => {
    if (closing) return;
    closing = true;
    try {
      listener.close();
    } catch {
      // closed already
    }
  };

  return {
    port: (listener.addr as Deno.NetAddr).port,
    get connections() {
      return connections.size;
    },
    get refusedConnections() {
      return refused;
    },
    get refusedPerIp() {
      return refusedPerIp;
    },
    get resetFloods() {
      return resetFloods;
    },
    close() {
      stopAccepting();
      for (const c of [...connections]) c.drain();
      void accepting.then(settle);
    },
    destroy() {
      stopAccepting();
      for (const c of [...connections]) c.destroy();
      void accepting.then(settle);
    },
    closed,
  };
}
