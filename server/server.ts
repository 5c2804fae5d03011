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
import { Server, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import {
  ConfigError,
  CORE_SETTINGS,
  type CoreConfig,
  readSettingFile,
  resolveCoreConfig,
} from "./config.ts";
import { type Logger, silentLogger } from "./log.ts";
import { ChatError } from "./rooms/errors.ts";
import { ChatHub } from "./rooms/hub.ts";
import { IdempotencyIndex } from "./rooms/idempotency.ts";
import { readKeys } from "./grpc/stored_key.ts";
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
} from "./grpcjs/direct_unary.ts";
import { authorizationOf, peerOf } from "./grpc/caller.ts";
import type { Access } from "./auth/access.ts";
import { createAccess } from "./auth/create.ts";
import { traceCalls } from "./grpcjs/trace_calls.ts";
import { dropDestroyedStreams } from "./grpcjs/stream_listeners.ts";
import {
  type DirectServerCall,
  enableDirectStreams,
} from "./grpcjs/direct_stream.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { streamMetricsHandler } from "./grpc/stream_metrics.ts";
import { subscribeMessagesHandler } from "./grpc/subscribe_messages.ts";
import { uploadMessagesHandler } from "./grpc/upload_messages.ts";
import { listPresenceHandler } from "./grpc/list_presence.ts";
import { LocalPresence, type Presence } from "./rooms/presence.ts";
import type { RedisBroker } from "./broker/redis_broker.ts";
import { presenceMessage } from "./grpc/messages.ts";
import { MessageType } from "../gen/chat_pb.ts";
import { file_chat } from "../gen/chat_pb.ts";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.ts";
import { CallStats } from "./ops/call_stats.ts";
import { countCalls, countDecodeFailures } from "./ops/call_counting.ts";
import { tlsPairError } from "../net/tls_pair_error.ts";
import { CoreHealth, type HealthSource } from "./ops/health.ts";
import { createCoreMetrics, type StoreLatency } from "./ops/metrics.ts";
import { observeStore } from "./ops/store_hooks.ts";
import { type MetricsServer, serveMetrics } from "./ops/metrics_server.ts";
import { addReflection, fileDescriptorProtos } from "./ops/reflection.ts";
import { listen, type Listener } from "./grpcjs/listen.ts";
import { listenFailure } from "../net/listen_error.ts";

/** What the server exposes to its owner: the bound port, counters, shutdown. */
export interface CoreServer {
  readonly port: number;
  /** The port of `GET /metrics`, or null without `--metrics-port`. */
  readonly metricsPort: number | null;
  /** Where the store reports its operation latencies (Prometheus). */
  readonly storeLatency: StoreLatency;
  /** "SERVING" or "NOT_SERVING", as grpc.health.v1 reports it. */
  health(): string;
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
  /** Times a subscriber too slow for a message went on from history. */
  fellBehind: number;
  slowDisconnects: number;
  stalledResets: number;
  /**
   * Request bytes of unfinished messages held now (the h2 transport's
   * request budget; 0 with the "node" transport).
   */
  unfinishedRequestBytes: number;
  /**
   * Request bytes received and not yet read by a handler (paused streams;
   * 0 with the "node" transport). Both count against the request budget.
   */
  queuedRequestBytes: number;
}

export interface StartOptions extends Partial<CoreConfig> {
  logger?: Logger;
  /**
   * The history store; by default one is opened from the config
   * (`store`, `dataDir`, `historySize`, `historyTtlMs`) and closed at
   * shutdown. A store passed in stays open: its owner closes it. Either way
   * its state is a health source ("store") and its commits are timed into
   * `chat_store_operation_seconds`.
   */
  historyStore?: HistoryStore;
  /**
   * Who may do what, instead of the rules the config describes (a test
   * that must hold a token check open passes its own).
   */
  access?: Access;
  /** Other dependencies whose health the core reports (a broker). */
  healthSources?: readonly HealthSource[];
}

/** The core cannot listen where it was told to (port taken, bad address). */
export class ListenError extends Error {
  override name = "ListenError";
}

export async function startCoreServer(
  options: StartOptions = {},
): Promise<CoreServer> {
  const {
    logger,
    historyStore: givenStore,
    healthSources = [],
    access: given,
    ...partial
  } = options;
  const config = resolveCoreConfig(partial);
  const log = logger ?? silentLogger;
  const calls = new CallScopes();
  const access = given ?? await createAccess(config, log);
  const tls = config.tlsCert === "" ? undefined : {
    cert: await readSettingFile("tlsCert", config.tlsCert),
    key: await readSettingFile("tlsKey", config.tlsKey),
  };
  // With --broker, history lives in Redis (BrokerUnavailableError when
  // Redis cannot be reached at start-up). The Redis client is loaded only
  // then: importing it takes ~270 ms, half of the core's start-up.
  let broker: RedisBroker | undefined;
  if (givenStore === undefined && config.broker !== "") {
    const { connectRedisBroker } = await import("./broker/redis_broker.ts");
    broker = await connectRedisBroker({
      url: config.broker,
      size: config.historySize,
      ttlMs: config.historyTtlMs,
      timeoutMs: config.brokerTimeoutMs,
      keysPerRoom: config.idempotencyKeys,
      ca: config.brokerCa === ""
        ? undefined
        : await readSettingFile("brokerCa", config.brokerCa),
    });
  }
  // Throws StoreOpenError (main.ts: exit 2) for an unreadable data file.
  const store = givenStore ?? broker ??
    await openStore(config, undefined, (m) => log.warn(m));
  const hub = new ChatHub<Uint8Array>({
    queueCapacity: config.queueSize,
    queueBytes: config.queueBytes,
    itemBytes: (item) => item.byteLength,
    policy: config.slowConsumer,
    store,
    item: frameStored,
    onInternal: (err) => log.error("publish callback failed", err),
  });
  let presence: Presence | undefined;
  if (config.presence) {
    if (broker) {
      const { createRedisPresence } = await import(
        "./broker/redis_presence.ts"
      );
      presence = createRedisPresence(broker, {
        // A dead core's users, swept by this one: tell the room.
        onGone: (room, user) =>
          hub.publish(room, presenceMessage(room, user, MessageType.LEAVE)),
      });
    } else presence = new LocalPresence();
  }
  const idempotency = config.idempotencyWindowMs > 0
    ? new IdempotencyIndex({
      windowMs: config.idempotencyWindowMs,
      maxKeys: config.idempotencyKeys,
      // A store that checks keys itself (Redis) answers a repeat from its
      // own: no room's history is read back for it.
      read: store.checksKeys
        ? undefined
        : (room, after) => readKeys(hub.store, room, after),
      // Nor is its answer kept: the store's is in the room's epoch.
      storeAnswers: store.checksKeys,
    })
    : undefined;
  const ctx: HandlerContext = {
    hub,
    calls,
    config,
    log,
    access,
    presence,
    idempotency,
  };
  const callStats = new CallStats();
  // Calls are counted only for /metrics: without it, nothing per call.
  const counting = config.metricsPort !== null;
  // The store's commits are timed once /metrics exists (below).
  const timed: { latency?: StoreLatency } = {};
  const storeHealth = observeStore(store, {
    observe: (operation, seconds) => timed.latency?.observe(operation, seconds),
  });
  const health = new CoreHealth([storeHealth, ...healthSources], log);

  const server = new Server({
    "grpc.max_concurrent_streams": config.maxConcurrentStreams,
    "grpc.max_receive_message_length": config.maxMessageBytes,
    "grpc.max_send_message_length": config.maxMessageBytes,
    // Nothing reads channelz here; on, it costs ~8% of unary throughput
    // (per-call trackers, Date.now() per message).
    "grpc.enable_channelz": 0,
  });
  const services = {
    addService: (
      definition: Parameters<Server["addService"]>[0],
      impl: UntypedServiceImplementation,
    ) => {
      callStats.registerService(definition);
      server.addService(
        counting ? countDecodeFailures(definition, callStats) : definition,
        counting ? countCalls(definition, impl, callStats) : impl,
      );
    },
  };
  const implementation: UntypedServiceImplementation = {
    SendMessage: sendMessageHandler(ctx),
    SubscribeMessages: subscribeMessagesHandler(ctx),
    UploadMessages: uploadMessagesHandler(ctx),
    Chat: chatHandler(ctx),
    StreamMetrics: streamMetricsHandler(ctx),
    ListPresence: listPresenceHandler(ctx),
  };
  services.addService(serverDefinition, implementation);
  health.addTo(services, calls);
  addReflection(
    services,
    fileDescriptorProtos([file_chat, file_grpc_health_v1_health]),
    calls,
  );

  let listener: Listener;
  try {
    listener = await listenOrExplain(server, config, log, tls);
  } catch (err) {
    health.close();
    await presence?.close();
    if (givenStore === undefined) await store.close();
    throw err;
  }
  const port = listener.port;
  const direct = new Map<string, DirectUnaryMethod>([[
    chatPaths.SendMessage,
    (bytes, headers, session, call) => {
      const caller = access.caller(
        authorizationOf(headers.authorization),
        () => peerOf(session),
      );
      if (!(caller instanceof Promise)) {
        return postMessage(ctx, decodeRequest(bytes), caller, call);
      }
      caller.then((c) => {
        // The client may have left while the token was verified.
        if (call.gone()) {
          return call.reply(new ChatError("cancelled", "call cancelled"));
        }
        try {
          postMessage(ctx, decodeRequest(bytes), c, call);
        } catch (err) {
          call.reply(err);
        }
      }, (err) => call.reply(err));
    },
  ]]);
  enableDirectUnary(server, direct, {
    maxMessageBytes: config.maxMessageBytes,
    onInternal: (err) => log.error("SendMessage failed", err),
    calls: counting ? callStats : undefined,
  });
  // SubscribeMessages without grpc-js's per-call objects: an idle subscriber
  // costs a third of the memory (server/grpcjs/direct_stream.ts). It runs
  // the same handler, counted the same way.
  const subscribe = { SubscribeMessages: implementation.SubscribeMessages };
  const { SubscribeMessages: subscribeHandler } = counting
    ? countCalls(serverDefinition, subscribe, callStats)
    : subscribe;
  enableDirectStreams(
    server,
    new Map([[chatPaths.SubscribeMessages, {
      // The bytes are a Buffer's view, as grpc-js would pass them.
      decode: (bytes: Uint8Array) =>
        serverDefinition.SubscribeMessages.requestDeserialize(bytes as Buffer),
      // The handler takes both calls (subscribe_messages.ts); grpc-js's
      // service type cannot say so.
      handler: subscribeHandler as unknown as (call: DirectServerCall) => void,
    }]]),
    {
      maxMessageBytes: config.maxMessageBytes,
      maxSendMessageBytes: config.maxMessageBytes,
      calls: counting ? callStats : undefined,
    },
  );
  // With OTEL_DENO=true: a span per call, child of the caller's traceparent.
  traceCalls(server);
  if (config.transport === "node") dropDestroyedStreams(server);

  // prom-client's default metrics watch the event loop and GC: only when asked.
  const metrics = config.metricsPort === null ? undefined : createCoreMetrics({
    calls: callStats,
    hub,
    serving: () => health.status === "SERVING",
    idempotency,
    connections: listener.connections === undefined ? undefined : () => ({
      open: listener.connections ?? 0,
      refused: listener.refusedConnections ?? 0,
      refusedPerIp: listener.refusedPerIp ?? 0,
      resetFloods: listener.resetFloods ?? 0,
    }),
  });
  timed.latency = metrics?.storeLatency;
  let metricsServer: MetricsServer | undefined;
  if (metrics !== undefined && config.metricsPort !== null) {
    try {
      metricsServer = serveMetrics(
        config.host,
        config.metricsPort,
        metrics.text,
        (err) => log.error("metrics endpoint", err),
      );
    } catch (err) {
      listener.destroy();
      server.forceShutdown();
      health.close();
      if (givenStore === undefined) await store.close();
      throw listenError(err, config.host, config.metricsPort, "--metrics-port");
    }
    log.notice(
      `metrics on http://${config.host}:${metricsServer.port}/metrics`,
    );
  }

  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = config.shutdownGraceMs): Promise<void> => {
    stopping ??= new Promise<void>((resolve) => {
      health.shuttingDown();
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
      health.close();
      await metricsServer?.close();
      await presence?.close();
      if (givenStore === undefined) await store.close();
    });
    return stopping;
  };

  return {
    port,
    metricsPort: metricsServer?.port ?? null,
    storeLatency: metrics?.storeLatency ?? { observe: () => {} },
    health: () => health.status,
    config: Object.freeze({ ...config, port }),
    snapshot: () => ({
      subscribers: hub.subscriberCount,
      rooms: hub.roomCount,
      activeStreams: hub.stats.activeStreams,
      openCalls: calls.size,
      dropped: hub.stats.dropped,
      fellBehind: hub.stats.fellBehind,
      slowDisconnects: hub.stats.slowDisconnects,
      stalledResets: hub.stats.stalledResets,
      unfinishedRequestBytes: listener.requestBudget?.unfinished ?? 0,
      queuedRequestBytes: listener.requestBudget?.queued ?? 0,
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

/**
 * listen(), with a taken port or a bad address as a ListenError, and a
 * certificate or key that Deno's TLS cannot use (not PEM, not a pair) as
 * a ConfigError naming both files.
 */
async function listenOrExplain(
  server: Server,
  config: Readonly<CoreConfig>,
  log: Logger,
  tls: Parameters<typeof listen>[3],
): Promise<Listener> {
  try {
    return await listen(server, config, log, tls);
  } catch (err) {
    const explained = listenError(err, config.host, config.port, "--port");
    const text = explained === err && tls !== undefined
      ? tlsPairError(err)
      : undefined;
    if (text !== undefined) {
      const { tlsCert: cert, tlsKey: key } = CORE_SETTINGS;
      throw new ConfigError(
        `--${cert.flag} (${cert.env}) ${config.tlsCert} and --${key.flag} (${key.env}) ${config.tlsKey} are not a certificate and its key: ${text}`,
      );
    }
    throw explained;
  }
}

/** A ListenError for a failed bind, or `err` itself if it is not one. */
function listenError(
  err: unknown,
  host: string,
  port: number,
  flag: string,
): unknown {
  const line = listenFailure(err, host, port, flag);
  return line === undefined ? err : new ListenError(line);
}
