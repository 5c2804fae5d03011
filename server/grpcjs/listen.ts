/**
 * How the core's grpc-js server listens: the transports and their
 * connection-level hooks, all of which rest on internals.ts.
 *
 * @module
 */
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import type { CoreConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import { batchWrites, type CorkableSocket } from "../../http2/batch_writes.ts";
import { listenWithGoawayGuard } from "./goaway_guard.ts";
import { listenWithH2 } from "./h2_transport.ts";
import { GRPC_JS_VERSION, grpcJsLayoutProblem } from "./internals.ts";
import { enableSocketBatching } from "./socket_batching.ts";

/** A listening transport, as the server's shutdown drives it. */
export interface Listener {
  readonly port: number;
  /** Stops accepting; connections close as their calls end. */
  close(): void;
  /** Resolves when every connection of ours is closed (after close()). */
  readonly closed: Promise<void>;
  /** Closes every connection now. */
  destroy(): void;
  /**
   * Connections open, refused for --max-connections or per IP, and of
   * those refused per IP (h2 only).
   */
  readonly connections?: number;
  readonly refusedConnections?: number;
  readonly refusedPerIp?: number;
  /** Connections sent GOAWAY(ENHANCE_YOUR_CALM) for rapid reset (h2 only). */
  readonly resetFloods?: number;
  /** The h2 transport's request budget (undefined with "node"). */
  readonly requestBudget?: {
    readonly unfinished: number;
    readonly queued: number;
  };
}

/**
 * Listens on the core's own HTTP/2 server (`--transport h2`), or, with the
 * `node` fallback, through the GOAWAY guard or grpc-js' own listener with
 * per-turn write batching for every connection either way. Logs once when
 * grpc-js failed the start-up check of internals.ts.
 */
export async function listen(
  server: Server,
  config: Readonly<CoreConfig>,
  log: Logger,
  // Only the h2 transport serves TLS (config.ts refuses TLS with "node").
  tls: { cert: string; key: string } | undefined,
): Promise<Listener> {
  if (grpcJsLayoutProblem !== undefined) {
    log.info(
      `grpc-js internals are not those of ${GRPC_JS_VERSION} ` +
        `(${grpcJsLayoutProblem}): direct paths and socket batching are off`,
    );
  }
  if (config.transport === "h2") {
    return listenWithH2(server, {
      host: config.host,
      port: config.port,
      maxConcurrentStreams: config.maxConcurrentStreams,
      maxConnections: config.maxConnections,
      maxConnectionsPerIp: config.maxConnectionsPerIp,
      tls,
      requestBufferPerConnection: config.requestBufferPerConnection,
      requestBufferTotal: config.requestBufferTotal,
      keepaliveIntervalMs: config.keepaliveIntervalMs,
      keepaliveTimeoutMs: config.keepaliveTimeoutMs,
      idleTimeoutMs: config.idleTimeoutMs,
      onError: (err) => log.error("h2 transport", err),
    });
  }
  // grpc-js closes its own sessions in tryShutdown/forceShutdown.
  const done = { closed: Promise.resolve(), destroy: () => {} };
  if (config.goawayGuard) {
    const guarded = await listenWithGoawayGuard(
      server,
      config.host,
      config.port,
      (conn) => {
        batchWrites(conn as unknown as CorkableSocket);
      },
    );
    return { ...done, port: guarded.port, close: () => void guarded.close() };
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `${config.host}:${config.port}`,
      ServerCredentials.createInsecure(),
      (err, bound) => err ? reject(err) : resolve(bound),
    );
  });
  enableSocketBatching(server);
  // grpc-js' tryShutdown/forceShutdown close its own listener.
  return { ...done, port, close: () => {} };
}
