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
import {
  postMessage,
  type PostReply,
  sendMessageHandler,
} from "./grpc/send_message.ts";
import { frameStored } from "./grpc/messages.ts";
import type { HistoryStore, StoreStatus } from "./rooms/history_store.ts";
import { openStore } from "./store/open_store.ts";
import { decodeSendRequest } from "./grpc/post_decoder.ts";
import { enableDirectUnary } from "./grpc/direct_unary.ts";
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
): Promise<Listener> {
  if (config.transport === "h2") {
    return listenWithH2(server, {
      host: config.host,
      port: config.port,
      maxConcurrentStreams: config.maxConcurrentStreams,
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
  const calls = new CallScopes();
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
  const ctx: HandlerContext = { hub, calls, config, log, presence };

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
    listener = await listen(server, config, log);
  } catch (err) {
    await presence?.close();
    if (givenStore === undefined) await store.close();
    throw err;
  }
  const port = listener.port;
  const direct = new Map([[
    chatPaths.SendMessage,
    (bytes: Uint8Array, reply: PostReply) =>
      postMessage(ctx, decodeRequest(bytes), reply),
  ]]);
  if (
    enableDirectUnary(server, direct, {
      maxMessageBytes: config.maxMessageBytes,
      onInternal: (err) => log.error("SendMessage failed", err),
    }) === 0
  ) {
    log.info("direct unary path unavailable: grpc-js serves SendMessage");
  }

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
