/**
 * One pooled HTTP/2 session to the core, re-opened on demand.
 *
 * After a GOAWAY, a connection error or a core restart the old session is
 * dropped at once, so the next call dials a fresh one while streams already
 * on the old session finish there. h2c for http:// URLs, TLS with ALPN h2 for
 * https:// URLs (node:http2 picks by the scheme).
 *
 * @module
 */
import http2 from "node:http2";
import net from "node:net";
import { batchWrites, type CorkableSocket } from "../../http2/batch_writes.ts";

/** Holds at most one usable session. */
export class SessionPool {
  readonly #origin: string;
  readonly #ca: string | undefined;
  #current: http2.ClientHttp2Session | undefined;
  readonly #all = new Set<http2.ClientHttp2Session>();
  /** The h2c sessions' sockets, dialled here. */
  readonly #sockets = new WeakMap<http2.ClientHttp2Session, net.Socket>();

  /** `ca` replaces the system roots for https:// (a private core's CA). */
  constructor(url: string, ca?: string) {
    this.#origin = new URL(url).origin;
    this.#ca = ca;
  }

  /** The current session, or a new one if there is none usable. */
  get(): http2.ClientHttp2Session {
    const s = this.#current;
    if (s && !s.closed && !s.destroyed) return s;
    return this.#open();
  }

  /** Resolves true if a PING round trip completes within `timeoutMs`. */
  ping(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const session = this.get();
      let done = false;
      const finish = (ok: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        session.off("close", onClose);
        resolve(ok);
      };
      const onClose = () => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      session.once("close", onClose);
      const send = () => {
        try {
          session.ping((err) => finish(!err));
        } catch {
          finish(false);
        }
      };
      // ping() before the handshake completes throws in some runtimes.
      if (session.connecting) session.once("connect", send);
      else send();
    });
  }

  /**
   * Closes every session with a plain TCP close, as the edge's own client
   * does: a GOAWAY exchange can abort the process in Deno's node:http2
   * client when a cancelled stream is still listed (nghttp2
   * `find_stream_on_goaway_func`, seen in a CI run of
   * tests/edge_upstream_test.ts; docs/goaway.md), and `session.destroy()`
   * alone still sends one (measured: RST_STREAMs, then GOAWAY). So the
   * socket goes first; the session then has nothing to write to.
   */
  async close(): Promise<void> {
    this.#current = undefined;
    await Promise.all([...this.#all].map((s) =>
      new Promise<void>((resolve) => {
        if (s.destroyed) return resolve();
        s.once("close", () => resolve());
        try {
          (this.#sockets.get(s) ??
            (s.socket as unknown as { destroy?(): void }))?.destroy?.();
        } catch { /* a socket node:http2 will not hand out: GOAWAY it is */ }
        s.destroy();
      })
    ));
  }

  #open(): http2.ClientHttp2Session {
    const url = new URL(this.#origin);
    // h2c: dial the socket ourselves so its writes can be batched per turn
    // (Deno's node:http2 writes one socket chunk per frame; see
    // docs/edge-perf-log.md). TLS keeps node:http2's own dialling.
    const options: http2.SecureClientSessionOptions = this.#ca
      ? { ca: this.#ca }
      : {};
    let dialled: net.Socket | undefined;
    if (url.protocol === "http:") {
      options.createConnection = () => {
        const socket = dialled = net.connect({
          host: url.hostname.replace(/^\[|\]$/g, ""),
          port: Number(url.port || 80),
        });
        batchWrites(socket as unknown as CorkableSocket);
        return socket;
      };
    }
    const session = http2.connect(this.#origin, options);
    if (dialled) this.#sockets.set(session, dialled);
    this.#current = session;
    this.#all.add(session);
    const drop = () => {
      if (this.#current === session) this.#current = undefined;
    };
    // Errors surface on each stream as well; here they only retire the session.
    session.on("error", drop);
    session.on("goaway", () => {
      drop();
      session.close();
    });
    session.on("close", () => {
      drop();
      this.#all.delete(session);
    });
    return session;
  }
}
