/**
 * The HTTP/2 connections to one origin, opened on demand.
 *
 * A stream goes to the first connection with room for it; a new connection
 * is dialled when every open one is draining after GOAWAY, dead, or at the
 * peer's SETTINGS_MAX_CONCURRENT_STREAMS. A finished connection drops out of
 * the pool by itself, so the edge follows core restarts.
 *
 * @module
 */
import {
  type ConnectionOptions,
  type ConnectionOwner,
  type ConnectionTarget,
  H2ClientConnection,
} from "./connection.ts";
import type { H2Stream } from "./stream.ts";

/** Connections to one `http:` (h2c) or `https:` (TLS, ALPN h2) origin. */
export class H2Pool implements ConnectionOwner {
  readonly #target: ConnectionTarget;
  readonly #options: ConnectionOptions;
  readonly #connections: H2ClientConnection[] = [];
  readonly #closing = new Set<Promise<void>>();
  #closed = false;

  /** `ca` is a PEM root for a private core's certificate. */
  constructor(url: string, options: ConnectionOptions, ca?: string) {
    const u = new URL(url);
    const tls = u.protocol === "https:";
    this.#target = {
      hostname: u.hostname.replace(/^\[|\]$/g, ""),
      port: Number(u.port || (tls ? 443 : 80)),
      tls,
      caCerts: ca === undefined ? undefined : [ca],
    };
    this.#options = options;
  }

  /** Open connections (dialling, serving or draining after GOAWAY). */
  get size(): number {
    return this.#connections.length;
  }

  /** Sends a stream on a connection with room, dialling one if needed. */
  place(stream: H2Stream): void {
    if (this.#closed) {
      stream.closed = true;
      stream.handler.onFail("edge is shutting down");
      return;
    }
    for (const c of this.#connections) {
      if (c.hasCapacity) return c.start(stream);
    }
    this.#dial().start(stream);
  }

  /**
   * Resolves true if the upstream answers a PING within `timeoutMs`: on an
   * established connection the peer serves (full or not), else on one
   * still dialling, and only with neither on a new one. A working
   * connection answers for its origin: a dial that fails or hangs while it
   * works (the peer at its connection bound, or out of descriptors with new
   * connections left in its backlog) must not make the balancer abandon the
   * calls on it.
   */
  ping(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    const c = this.#connections.find((c) => c.established) ??
      this.#connections.find((c) => c.hasCapacity) ?? this.#dial();
    return c.ping(timeoutMs);
  }

  /**
   * The peer stopped answering: every connection ends now, its streams
   * failing with `message`; the next stream dials afresh.
   */
  abandon(message: string): void {
    for (const c of [...this.#connections]) c.abandon(message);
  }

  /** A connection finished; it takes no more streams. */
  closed(connection: H2ClientConnection): void {
    const i = this.#connections.indexOf(connection);
    if (i >= 0) this.#connections.splice(i, 1);
    // Keep waiting on its socket so close() leaves nothing running.
    const done = connection.close();
    this.#closing.add(done);
    void done.finally(() => this.#closing.delete(done));
  }

  /** Ends every connection (GOAWAY, streams fail) and waits for the sockets. */
  async close(): Promise<void> {
    this.#closed = true;
    // close() removes each from the list: iterate over a copy.
    await Promise.all([...this.#connections].map((c) => c.close()));
    while (this.#closing.size > 0) await Promise.all([...this.#closing]);
  }

  #dial(): H2ClientConnection {
    const c = new H2ClientConnection(this, this.#target, this.#options);
    this.#connections.push(c);
    return c;
  }
}
