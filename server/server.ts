/**
 * The core gRPC server: chat.ChatService on grpc-js, with graceful shutdown.
 *
 * @example
 * ```ts
 * const core = await startCoreServer({ port: 0 });
 * console.log(core.port);
 * await core.shutdown();
 * ```
 */
import {
  Server,
  ServerCredentials,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { type CoreConfig, resolveCoreConfig } from "./config.ts";
import { type Logger, silentLogger } from "./log.ts";
import { ChatError } from "./rooms/errors.ts";
import { ChatHub } from "./rooms/hub.ts";
import { CallScopes } from "./grpc/call_scope.ts";
import { chatHandler } from "./grpc/chat.ts";
import type { HandlerContext } from "./grpc/context.ts";
import { serverDefinition } from "./grpc/definition.ts";
import { postMessage, sendMessageHandler } from "./grpc/send_message.ts";
import { frameStored } from "./grpc/messages.ts";
import type { HistoryStore, StoreStatus } from "./rooms/history_store.ts";
import { openStore } from "./store/open_store.ts";
import { decodeSendRequest } from "./grpc/post_decoder.ts";
import {
  type DirectUnaryMethod,
  enableDirectUnary,
} from "./grpc/direct_unary.ts";
import { peerOf } from "./grpc/caller.ts";
import { createAccess } from "./auth/create.ts";
import { traceCalls } from "./grpc/trace_calls.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { streamMetricsHandler } from "./grpc/stream_metrics.ts";
import { subscribeMessagesHandler } from "./grpc/subscribe_messages.ts";
import { uploadMessagesHandler } from "./grpc/upload_messages.ts";
import { listPresenceHandler } from "./grpc/list_presence.ts";
import { LocalPresence, type Presence } from "./rooms/presence.ts";
import { connectRedisBroker } from "./broker/redis_broker.ts";
import { createRedisPresence } from "./broker/redis_presence.ts";
import { presenceMessage } from "./grpc/messages.ts";
import { MessageType } from "../gen/chat_pb.ts";
import { enableSocketBatching } from "./grpc/socket_batching.ts";
import { batchWrites, type CorkableSocket } from "../sockets/batch_writes.ts";
import { listenWithGoawayGuard } from "./grpc/goaway_guard.ts";
import { listenWithH2 } from "./grpc/h2_transport.ts";

interface Listener {
  readonly port: number;
  /** Stops accepting; connections close as their calls end. */
  close(): void;
  /** Resolves when every connection of ours is closed (after close()). */
  readonly closed: Promise<void>;
  /** Closes every connection now. */
  destroy(): void;
}

/**
 * Listens through the GOAWAY guard (default) or grpc-js' own listener, and
 * turns on per-turn write batching for every connection either way.
 */
async function listen(
  server: Server,
  config: Readonly<CoreConfig>,
  log: Logger,
  // Only the h2 transport serves TLS (config.ts refuses TLS with "node").
  tls: { cert: string; key: string } | undefined,
): Promise<Listener> {
  if (config.transport === "h2") {
    return listenWithH2(server, {
      host: config.host,
      port: config.port,
      maxConcurrentStreams: config.maxConcurrentStreams,
      tls,
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
  if (enableSocketBatching(server) === 0) {
    log.info("socket write batching unavailable: one write per frame");
  }
  // grpc-js' tryShutdown/forceShutdown close its own listener.
  return { ...done, port, close: () => {} };
}

/** What the server exposes to its owner: the bound port, counters, shutdown. */
export interface CoreServer {
  readonly port: number;
  readonly config: Readonly<CoreConfig>;
  /** Live counts, for health checks and tests. */
  snapshot(): CoreSnapshot;
  /** The history store's health and commit latency. */
  store(): StoreStatus;
  /**
   * Stops accepting calls, ends open streams with UNAVAILABLE, waits up to
   * `graceMs` (default from config) for connections to close, then forces.
   */
  shutdown(graceMs?: number): Promise<void>;
}

export interface CoreSnapshot {
  subscribers: number;
  rooms: number;
  activeStreams: number;
  openCalls: number;
  dropped: number;
  slowDisconnects: number;
  stalledResets: number;
}

export interface StartOptions extends Partial<CoreConfig> {
  logger?: Logger;
  /**
   * The history store; by default one is opened from the config
   * (`store`, `dataDir`, `historySize`, `historyTtlMs`) and closed at
   * shutdown. A store passed in stays open: its owner closes it.
   */
  historyStore?: HistoryStore;
}

export async function startCoreServer(
  options: StartOptions = {},
): Promise<CoreServer> {
  const { logger, historyStore: givenStore, ...partial } = options;
  const config = resolveCoreConfig(partial);
  const log = logger ?? silentLogger;
  const calls = new CallScopes();
  const access = await createAccess(config, log);
  const tls = config.tlsCert === "" ? undefined : {
    cert: await Deno.readTextFile(config.tlsCert),
    key: await Deno.readTextFile(config.tlsKey),
  };
  // With --broker, history lives in Redis (BrokerUnavailableError when
  // Redis cannot be reached at start-up).
  const broker = givenStore === undefined && config.broker !== ""
    ? await connectRedisBroker({
      url: config.broker,
      size: config.historySize,
      ttlMs: config.historyTtlMs,
    })
    : undefined;
  // Throws StoreOpenError (main.ts: exit 2) for an unreadable data file.
  const store = givenStore ?? broker ?? await openStore(config);
  const hub = new ChatHub<Uint8Array>({
    queueCapacity: config.queueSize,
    policy: config.slowConsumer,
    store,
    item: frameStored,
    onInternal: (err) => log.error("publish callback failed", err),
  });
  let presence: Presence | undefined;
  if (config.presence) {
    presence = broker
      ? createRedisPresence(broker, {
        // A dead core's users, swept by this one: tell the room.
        onGone: (room, user) =>
          hub.publish(room, presenceMessage(room, user, MessageType.LEAVE)),
      })
      : new LocalPresence();
  }
  const ctx: HandlerContext = {
    hub,
    calls,
    config,
    log,
    access,
    presence,
  };

  const server = new Server({
    "grpc.max_concurrent_streams": config.maxConcurrentStreams,
    "grpc.max_receive_message_length": config.maxMessageBytes,
    "grpc.max_send_message_length": config.maxMessageBytes,
    // Nothing reads channelz here; on, it costs ~8% of unary throughput
    // (per-call trackers, Date.now() per message).
    "grpc.enable_channelz": 0,
  });
  const implementation: UntypedServiceImplementation = {
    SendMessage: sendMessageHandler(ctx),
    SubscribeMessages: subscribeMessagesHandler(ctx),
    UploadMessages: uploadMessagesHandler(ctx),
    Chat: chatHandler(ctx),
    StreamMetrics: streamMetricsHandler(ctx),
    ListPresence: listPresenceHandler(ctx),
  };
  server.addService(serverDefinition, implementation);

  let listener: Listener;
  try {
    listener = await listen(server, config, log, tls);
  } catch (err) {
    await presence?.close();
    if (givenStore === undefined) await store.close();
    throw err;
  }
  const port = listener.port;
  const direct = new Map<string, DirectUnaryMethod>([[
    chatPaths.SendMessage,
    (bytes, headers, session, reply) => {
      const caller = access.caller(
        headers.authorization,
        () => peerOf(session),
      );
      if (!(caller instanceof Promise)) {
        return postMessage(ctx, decodeRequest(bytes), caller, reply);
      }
      caller.then((c) => {
        try {
          postMessage(ctx, decodeRequest(bytes), c, reply);
        } catch (err) {
          reply(err);
        }
      }, reply);
    },
  ]]);
  if (
    enableDirectUnary(server, direct, {
      maxMessageBytes: config.maxMessageBytes,
      onInternal: (err) => log.error("SendMessage failed", err),
    }) === 0
  ) {
    log.info("direct unary path unavailable: grpc-js serves SendMessage");
  }
  // With OTEL_DENO=true: a span per call, child of the caller's traceparent.
  traceCalls(server);

  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = config.shutdownGraceMs): Promise<void> => {
    stopping ??= new Promise<void>((resolve) => {
      log.info(`shutting down: ${calls.size} open calls, grace ${graceMs} ms`);
      const force = setTimeout(() => {
        log.info("grace period over: closing remaining connections");
        server.forceShutdown();
        listener.destroy();
        resolve();
      }, graceMs);
      listener.close();
      server.tryShutdown(() => {
        void listener.closed.then(() => {
          clearTimeout(force);
          resolve();
        });
      });
      // Streams never end by themselves: tell them now, with a status.
      calls.abortAll(new ChatError("unavailable", "server is shutting down"));
    }).then(async () => {
      await presence?.close();
      if (givenStore === undefined) await store.close();
    });
    return stopping;
  };

  return {
    port,
    config: Object.freeze({ ...config, port }),
    snapshot: () => ({
      subscribers: hub.subscriberCount,
      rooms: hub.roomCount,
      activeStreams: hub.stats.activeStreams,
      openCalls: calls.size,
      dropped: hub.stats.dropped,
      slowDisconnects: hub.stats.slowDisconnects,
      stalledResets: hub.stats.stalledResets,
    }),
    store: () => store.status(),
    shutdown,
  };
}

/** Decodes a SendMessageRequest; undecodable bytes are INTERNAL, as in grpc-js. */
function decodeRequest(bytes: Uint8Array) {
  try {
    return decodeSendRequest(bytes);
  } catch (err) {
    throw new ChatError(
      "internal",
      `Error deserializing request: ${(err as Error).message}`,
    );
  }
}
