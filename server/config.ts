/**
 * Core server configuration, parsed once into a frozen, complete object.
 *
 * Flags win over environment variables, which win over defaults. Values out
 * of range are rejected at start-up with a message naming the flag and the
 * variable, so a typo never becomes a silently different server.
 */
import { parseArgs } from "node:util";
import { argsErrorLine } from "../config/args_error.ts";
import { joinNegativeValues } from "../config/negative_values.ts";
import { hs256SecretError } from "../auth/secret.ts";
import { parseNumberFlag } from "../config/number_flag.ts";
import type { SlowConsumerPolicy } from "./rooms/subscriber.ts";
import { DEFAULT_REQUEST_BUDGET } from "../http2/server/request_budget.ts";

export interface CoreConfig {
  /** Interface to listen on. */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Largest message accepted or sent, in bytes (each way). */
  maxMessageBytes: number;
  /** HTTP/2 concurrent streams per connection. */
  maxConcurrentStreams: number;
  /** Connections served at once (the h2 transport); 0: no bound. */
  maxConnections: number;
  /** Of those, from one client address (an IPv6 client by its /64); 0: no bound. */
  maxConnectionsPerIp: number;
  /**
   * With the "h2" transport: request bytes of unfinished messages one
   * connection may hold; the call that goes over ends RESOURCE_EXHAUSTED,
   * a connection that keeps going over gets GOAWAY(ENHANCE_YOUR_CALM).
   */
  requestBufferPerConnection: number;
  /** The same bound across all connections of the process. */
  requestBufferTotal: number;
  /**
   * With the "h2" transport: a PING after this long without a byte from a
   * client; 0 sends none.
   */
  keepaliveIntervalMs: number;
  /** How long a keepalive PING waits for an answer before the close. */
  keepaliveTimeoutMs: number;
  /**
   * With the "h2" transport: a connection with no open call for this long is
   * closed; 0 keeps it open.
   */
  idleTimeoutMs: number;
  /** Messages a paused subscriber may queue. */
  queueSize: number;
  /**
   * Bytes a paused subscriber may queue (0: no bound); a first message
   * larger than this is still queued alone.
   */
  queueBytes: number;
  /** What happens when a subscriber's queue is full. */
  slowConsumer: SlowConsumerPolicy;
  /**
   * How long a subscriber cut off by the "disconnect" policy has to take its
   * RESOURCE_EXHAUSTED status; a client that stopped reading never will
   * (HTTP/2 flow control holds it back), so its stream is reset after this.
   */
  slowConsumerGraceMs: number;
  /** Period of the Chat stream's "Server is alive!" message; 0 turns it off. */
  aliveIntervalMs: number;
  /** How long shutdown waits for calls to end before forcing. */
  shutdownGraceMs: number;
  /** Announce JOIN/LEAVE messages to a room when subscribers come and go. */
  presence: boolean;
  /** Label on every metric, to tell instances apart. */
  instanceId: string;
  /**
   * Who carries HTTP/2 under grpc-js: "h2", the core's own server
   * (http2/server/, on Deno.listen), or "node", Deno's `node:http2` through
   * grpc-js's own listener.
   */
  transport: "h2" | "node";
  /**
   * With the "node" transport: drop HTTP/2 GOAWAY frames from clients before Deno's nghttp2 sees them
   * (works around a Deno 2.9 abort; see docs/goaway.md).
   */
  goawayGuard: boolean;
  /** "info" logs lifecycle events; "debug" adds subscribe/unsubscribe. */
  logLevel: "error" | "info" | "debug";
  /**
   * Where room history lives: "log" (durable, an append-only log under
   * `dataDir`), "sqlite" (durable, `dataDir/chat.sqlite`) or "memory" (lost
   * on restart, then with a new epoch).
   */
  store: "log" | "sqlite" | "memory";
  /** Directory of the history files (log or SQLite). */
  dataDir: string;
  /** Messages kept per room. */
  historySize: number;
  /** How long a message is kept, in ms; 0: until `historySize` pushes it out. */
  historyTtlMs: number;
  /**
   * Body bytes kept per room in memory (log and memory stores); a single
   * larger message is still kept as the room's last.
   */
  historyBytes: number;
  /**
   * Body bytes kept by all rooms together (log and memory stores): past it,
   * the least recently written rooms lose their oldest messages first.
   */
  historyMaxBytes: number;
  /**
   * Rooms the embedded stores keep at most: past it, the least recently
   * written are forgotten (their history and epoch), as the TTL would.
   */
  historyMaxRooms: number;
  /**
   * How long an idempotency key (SendMessage, Upload, Chat) is remembered after its
   * message, in ms (rooms/idempotency.ts); 0: keys are not checked.
   */
  idempotencyWindowMs: number;
  /** Idempotency keys remembered at most, over all rooms. */
  idempotencyKeys: number;
  // Operations (server/ops/): metrics endpoint and log format.
  /** Port of the HTTP/1.1 `GET /metrics` endpoint; null: none; 0 picks one. */
  metricsPort: number | null;
  /** "text" lines for people, or one JSON object per line for collectors. */
  logFormat: "text" | "json";

  // Who may speak (docs/auth.md). Empty strings mean "not set".
  /** HS256 secret for JWT bearer tokens. */
  jwtSecret: string;
  /** File with a PEM public key for RS256, ES256 or EdDSA tokens. */
  jwtPublicKey: string;
  /** Required `iss` claim. */
  jwtIssuer: string;
  /** Required `aud` claim. */
  jwtAudience: string;
  /** Clock skew accepted on `exp` and `nbf`, in seconds. */
  jwtLeewaySeconds: number;
  /** Distinct tokens verified at once at most; 0: no cap (docs/auth.md). */
  jwtMaxVerifying: number;
  /** Messages per second per user (per connection with auth off); 0: no limit. */
  rateLimit: number;
  /** Messages allowed at once after a quiet spell; 0: same as rateLimit. */
  rateBurst: number;
  /** Concurrent subscriptions per user (per connection with auth off); 0: no limit. */
  maxSubscriptions: number;
  /** Files with the TLS certificate chain and key (PEM); both or neither. */
  tlsCert: string;
  tlsKey: string;
  /**
   * `redis://host:port[/db]`: rooms, history and presence shared with every
   * core on the same Redis (instead of `store`); "" keeps them here.
   */
  broker: string;
  /** How long a Redis command may wait for its answer (ms), with `broker`. */
  brokerTimeoutMs: number;
  /** PEM file of the CA(s) to trust for a `rediss://` broker ("": the system's). */
  brokerCa: string;
}

export const DEFAULT_CORE_CONFIG: Readonly<CoreConfig> = Object.freeze({
  host: "127.0.0.1",
  port: 50051,
  maxMessageBytes: 10 * 1024 * 1024,
  maxConcurrentStreams: 1000,
  maxConnections: 10_000,
  maxConnectionsPerIp: 0,
  requestBufferPerConnection: DEFAULT_REQUEST_BUDGET.perConnection,
  requestBufferTotal: DEFAULT_REQUEST_BUDGET.total,
  keepaliveIntervalMs: 60_000,
  keepaliveTimeoutMs: 20_000,
  idleTimeoutMs: 300_000,
  queueSize: 100,
  queueBytes: 4 * 1024 * 1024,
  slowConsumer: "drop",
  slowConsumerGraceMs: 5000,
  aliveIntervalMs: 5000,
  shutdownGraceMs: 5000,
  presence: false,
  instanceId: "core",
  transport: "h2",
  goawayGuard: true,
  logLevel: "info",
  store: "log",
  dataDir: "data",
  historySize: 1000,
  historyTtlMs: 24 * 3600 * 1000,
  historyBytes: 4 * 1024 * 1024,
  historyMaxBytes: 512 * 1024 * 1024,
  historyMaxRooms: 1_000_000,
  idempotencyWindowMs: 5 * 60 * 1000,
  idempotencyKeys: 100_000,
  metricsPort: null,
  logFormat: "text",
  jwtSecret: "",
  jwtPublicKey: "",
  jwtIssuer: "",
  jwtAudience: "",
  jwtLeewaySeconds: 5,
  jwtMaxVerifying: 1000,
  rateLimit: 0,
  rateBurst: 0,
  maxSubscriptions: 0,
  tlsCert: "",
  tlsKey: "",
  broker: "",
  brokerTimeoutMs: 5000,
  brokerCa: "",
});

/** One row per setting: its flag, its environment variable, how to parse it. */
const SETTINGS: Record<keyof CoreConfig, { flag: string; env: string }> = {
  host: { flag: "host", env: "HOST" },
  port: { flag: "port", env: "PORT" },
  maxMessageBytes: { flag: "max-message-bytes", env: "CHAT_MAX_MESSAGE_BYTES" },
  maxConcurrentStreams: {
    flag: "max-concurrent-streams",
    env: "CHAT_MAX_CONCURRENT_STREAMS",
  },
  maxConnections: { flag: "max-connections", env: "CHAT_MAX_CONNECTIONS" },
  maxConnectionsPerIp: {
    flag: "max-connections-per-ip",
    env: "CHAT_MAX_CONNECTIONS_PER_IP",
  },
  requestBufferPerConnection: {
    flag: "request-buffer-per-connection",
    env: "CHAT_REQUEST_BUFFER_PER_CONNECTION",
  },
  requestBufferTotal: {
    flag: "request-buffer-total",
    env: "CHAT_REQUEST_BUFFER_TOTAL",
  },
  keepaliveIntervalMs: {
    flag: "keepalive-interval-ms",
    env: "CHAT_KEEPALIVE_INTERVAL_MS",
  },
  keepaliveTimeoutMs: {
    flag: "keepalive-timeout-ms",
    env: "CHAT_KEEPALIVE_TIMEOUT_MS",
  },
  idleTimeoutMs: { flag: "idle-timeout-ms", env: "CHAT_IDLE_TIMEOUT_MS" },
  queueSize: { flag: "queue-size", env: "CHAT_QUEUE_SIZE" },
  queueBytes: { flag: "queue-bytes", env: "CHAT_QUEUE_BYTES" },
  slowConsumer: { flag: "slow-consumer", env: "CHAT_SLOW_CONSUMER" },
  slowConsumerGraceMs: {
    flag: "slow-consumer-grace-ms",
    env: "CHAT_SLOW_CONSUMER_GRACE_MS",
  },
  aliveIntervalMs: { flag: "alive-interval-ms", env: "CHAT_ALIVE_INTERVAL_MS" },
  shutdownGraceMs: { flag: "shutdown-grace-ms", env: "CHAT_SHUTDOWN_GRACE_MS" },
  presence: { flag: "presence", env: "CHAT_PRESENCE" },
  instanceId: { flag: "instance-id", env: "CHAT_INSTANCE_ID" },
  transport: { flag: "transport", env: "CHAT_TRANSPORT" },
  goawayGuard: { flag: "goaway-guard", env: "CHAT_GOAWAY_GUARD" },
  logLevel: { flag: "log-level", env: "LOG_LEVEL" },
  store: { flag: "store", env: "CHAT_STORE" },
  dataDir: { flag: "data-dir", env: "CHAT_DATA_DIR" },
  historySize: { flag: "history-size", env: "CHAT_HISTORY_SIZE" },
  historyTtlMs: { flag: "history-ttl", env: "CHAT_HISTORY_TTL" },
  historyBytes: { flag: "history-bytes", env: "CHAT_HISTORY_BYTES" },
  historyMaxBytes: {
    flag: "history-max-bytes",
    env: "CHAT_HISTORY_MAX_BYTES",
  },
  historyMaxRooms: {
    flag: "history-max-rooms",
    env: "CHAT_HISTORY_MAX_ROOMS",
  },
  idempotencyWindowMs: {
    flag: "idempotency-window",
    env: "CHAT_IDEMPOTENCY_WINDOW",
  },
  idempotencyKeys: { flag: "idempotency-keys", env: "CHAT_IDEMPOTENCY_KEYS" },
  metricsPort: { flag: "metrics-port", env: "CHAT_METRICS_PORT" },
  logFormat: { flag: "log-format", env: "LOG_FORMAT" },
  jwtSecret: { flag: "jwt-secret", env: "CHAT_JWT_SECRET" },
  jwtPublicKey: { flag: "jwt-public-key", env: "CHAT_JWT_PUBLIC_KEY" },
  jwtIssuer: { flag: "jwt-issuer", env: "CHAT_JWT_ISSUER" },
  jwtAudience: { flag: "jwt-audience", env: "CHAT_JWT_AUDIENCE" },
  jwtLeewaySeconds: {
    flag: "jwt-leeway-seconds",
    env: "CHAT_JWT_LEEWAY_SECONDS",
  },
  jwtMaxVerifying: { flag: "jwt-max-verifying", env: "CHAT_JWT_MAX_VERIFYING" },
  rateLimit: { flag: "rate-limit", env: "CHAT_RATE_LIMIT" },
  rateBurst: { flag: "rate-burst", env: "CHAT_RATE_BURST" },
  maxSubscriptions: {
    flag: "max-subscriptions",
    env: "CHAT_MAX_SUBSCRIPTIONS",
  },
  tlsCert: { flag: "tls-cert", env: "CHAT_TLS_CERT" },
  tlsKey: { flag: "tls-key", env: "CHAT_TLS_KEY" },
  broker: { flag: "broker", env: "CHAT_BROKER" },
  brokerTimeoutMs: { flag: "broker-timeout", env: "CHAT_BROKER_TIMEOUT" },
  brokerCa: { flag: "broker-ca", env: "CHAT_BROKER_CA" },
};

/** The flag and environment variable of every setting (for --help). */
export const CORE_SETTINGS: Readonly<typeof SETTINGS> = SETTINGS;

export class ConfigError extends Error {
  override name = "ConfigError";
}

function integer(name: string, raw: string, min: number, max: number): number {
  return parseNumberFlag(name, raw, { min, max }, ConfigError);
}

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** `24h`, `30m`, `90s`, `500ms`, `7d`; a bare number is seconds; 0 is 0. */
function duration(name: string, raw: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(raw.trim());
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] ?? "s"] : NaN;
  if (!Number.isSafeInteger(ms) || ms > 366 * UNIT_MS.d) {
    throw new ConfigError(
      `${name} must be a duration such as 24h, 30m, 90s or 0 (at most 366d), got "${raw}"`,
    );
  }
  return ms;
}

function oneOf<V extends string>(
  name: string,
  raw: string,
  values: readonly V[],
): V {
  if (!(values as readonly string[]).includes(raw)) {
    throw new ConfigError(
      `${name} must be one of ${values.join(", ")}, got "${raw}"`,
    );
  }
  return raw as V;
}

/**
 * A Redis URL (or "" for none): `redis://` or `rediss://` (TLS), an optional
 * user and password, a host, a port and a database number.
 */
function brokerUrl(name: string, raw: string): string {
  if (raw.trim() === "") return "";
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch { /* reported below */ }
  const db = url?.pathname.replace(/^\//, "") ?? "";
  if (
    !url || (url.protocol !== "redis:" && url.protocol !== "rediss:") ||
    url.hostname === "" || !/^\d*$/.test(db) || url.search || url.hash
  ) {
    throw new ConfigError(
      `${name} must be a Redis URL like redis://127.0.0.1:6379, ` +
        `redis://:password@host:6379/2 or rediss://host:6380 (TLS), got "${
          redactUrl(raw)
        }"`,
    );
  }
  // redis-cli reads `redis://secret@host` as a password; node-redis as a
  // user with none, and never authenticates: say so here, not as NOAUTH.
  if (url.username !== "" && url.password === "") {
    throw new ConfigError(
      `${name}: a user needs a password (redis://user:password@host); ` +
        `for a password alone write redis://:password@host`,
    );
  }
  try {
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    throw new ConfigError(
      `${name}: the user or password has a bad %-escape (write % as %25), got "${
        redactUrl(raw)
      }"`,
    );
  }
  return raw;
}

/**
 * `raw` with the password of its userinfo replaced by `***`: what logs and
 * errors show of a URL such as `--broker`'s.
 */
export function redactUrl(raw: string): string {
  const start = raw.indexOf("://");
  const at = raw.lastIndexOf("@");
  if (start < 0 || at < start) return raw;
  // Everything up to the last "@" is userinfo (a password may hold "@",
  // ":" or "/"); of it only a user name before a ":" is shown.
  const info = raw.slice(start + 3, at);
  const colon = info.indexOf(":");
  const user = colon < 0 ? "***" : `${info.slice(0, colon)}:***`;
  return `${raw.slice(0, start + 3)}${user}${raw.slice(at)}`;
}

/**
 * The text of a file a setting names (a certificate, a key), or a
 * ConfigError saying which setting and why: a missing file is a bad value,
 * not a crash.
 */
export async function readSettingFile(
  key: "tlsCert" | "tlsKey" | "jwtPublicKey" | "brokerCa",
  path: string,
): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    // The value came from the flag or the variable: name both.
    const { flag, env } = SETTINGS[key];
    throw new ConfigError(
      `cannot read --${flag} (${env}) ${path}: ${(err as Error).message}`,
    );
  }
}

function flag(name: string, raw: string): boolean {
  const v = oneOf(name, raw, ["true", "false", "1", "0", "on", "off"] as const);
  return v === "true" || v === "1" || v === "on";
}

function parseValue<K extends keyof CoreConfig>(
  key: K,
  name: string,
  raw: string,
): CoreConfig[K] {
  const MAX_BYTES = 2 ** 31 - 1;
  const parsers: { [P in keyof CoreConfig]: (raw: string) => CoreConfig[P] } = {
    host: (r) => {
      if (r.trim() === "") throw new ConfigError(`${name} must not be empty`);
      return r;
    },
    port: (r) => integer(name, r, 0, 65535),
    maxMessageBytes: (r) => integer(name, r, 1024, MAX_BYTES),
    maxConcurrentStreams: (r) => integer(name, r, 1, 2 ** 31 - 1),
    maxConnections: (r) => integer(name, r, 0, 10_000_000),
    maxConnectionsPerIp: (r) => integer(name, r, 0, 10_000_000),
    requestBufferPerConnection: (r) => integer(name, r, 1024, 2 ** 42),
    requestBufferTotal: (r) => integer(name, r, 1024, 2 ** 42),
    keepaliveIntervalMs: (r) => integer(name, r, 0, 86_400_000),
    keepaliveTimeoutMs: (r) => integer(name, r, 1, 600_000),
    idleTimeoutMs: (r) => integer(name, r, 0, 86_400_000),
    queueSize: (r) => integer(name, r, 1, 1_000_000),
    queueBytes: (r) => integer(name, r, 0, 2 ** 42),
    slowConsumer: (r) => oneOf(name, r, ["drop", "disconnect"] as const),
    slowConsumerGraceMs: (r) => integer(name, r, 0, 600_000),
    aliveIntervalMs: (r) => integer(name, r, 0, 86_400_000),
    shutdownGraceMs: (r) => integer(name, r, 0, 600_000),
    presence: (r) => flag(name, r),
    instanceId: (r) => r,
    transport: (r) => oneOf(name, r, ["h2", "node"] as const),
    goawayGuard: (r) => flag(name, r),
    logLevel: (r) => oneOf(name, r, ["error", "info", "debug"] as const),
    store: (r) => oneOf(name, r, ["log", "sqlite", "memory"] as const),
    dataDir: (r) => {
      if (r.trim() === "") throw new ConfigError(`${name} must not be empty`);
      return r;
    },
    historySize: (r) => integer(name, r, 0, 1_000_000),
    historyTtlMs: (r) => duration(name, r),
    historyBytes: (r) => integer(name, r, 1024, 2 ** 42),
    historyMaxBytes: (r) => integer(name, r, 1024, 2 ** 46),
    historyMaxRooms: (r) => integer(name, r, 100, 1_000_000_000),
    idempotencyWindowMs: (r) => duration(name, r),
    idempotencyKeys: (r) => integer(name, r, 1, 100_000_000),
    metricsPort: (r) => {
      if (r === "off") return null;
      if (!/^\d+$/.test(r) || Number(r) > 65535) {
        throw new ConfigError(
          `${name} must be an integer from 0 to 65535 or "off", got "${r}"`,
        );
      }
      return Number(r);
    },
    logFormat: (r) => oneOf(name, r, ["text", "json"] as const),
    jwtSecret: (r) => {
      // HS256 keys shorter than the hash are guessable offline (RFC 7518 3.2).
      const short = hs256SecretError(name, r);
      if (short !== undefined) throw new ConfigError(short);
      return r;
    },
    jwtPublicKey: (r) => r,
    jwtIssuer: (r) => r,
    jwtAudience: (r) => r,
    jwtLeewaySeconds: (r) => integer(name, r, 0, 300),
    jwtMaxVerifying: (r) => integer(name, r, 0, 1_000_000),
    rateLimit: (r) => integer(name, r, 0, 1_000_000_000),
    rateBurst: (r) => integer(name, r, 0, 1_000_000_000),
    maxSubscriptions: (r) => integer(name, r, 0, 1_000_000_000),
    tlsCert: (r) => r,
    tlsKey: (r) => r,
    broker: (r) => brokerUrl(name, r),
    brokerTimeoutMs: (r) => {
      const ms = duration(name, r);
      if (ms < 50 || ms > 600_000) {
        throw new ConfigError(
          `${name} must be a duration from 50ms to 10m, got "${r}"`,
        );
      }
      return ms;
    },
    brokerCa: (r) => r,
  };
  return parsers[key](raw);
}

/**
 * Builds the config from command-line flags and environment variables.
 * Throws ConfigError with a readable message for bad values or unknown flags.
 */
export function parseCoreConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Readonly<CoreConfig> {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const { flag } of Object.values(SETTINGS)) {
    options[flag] = { type: flag === "presence" ? "boolean" : "string" };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(`${argsErrorLine(err)} (see --help)`);
  }
  const config: Record<string, unknown> = { ...DEFAULT_CORE_CONFIG };
  for (const [key, { flag, env: envName }] of Object.entries(SETTINGS)) {
    const fromFlag = values[flag];
    if (fromFlag !== undefined) {
      config[key] = typeof fromFlag === "boolean"
        ? fromFlag
        : parseValue(key as keyof CoreConfig, `--${flag}`, fromFlag);
    } else if (env[envName] !== undefined) {
      config[key] = parseValue(
        key as keyof CoreConfig,
        envName,
        env[envName] as string,
      );
    }
  }
  checkAuthSettings(config as unknown as CoreConfig);
  return Object.freeze(checkBudget(config as unknown as CoreConfig));
}

/**
 * A connection's request buffer must hold one largest message (with its
 * prefix), and the process's at least one connection's.
 */
function checkBudget(config: CoreConfig): CoreConfig {
  const perConnection = SETTINGS.requestBufferPerConnection;
  if (config.requestBufferPerConnection < config.maxMessageBytes + 5) {
    throw new ConfigError(
      `--${perConnection.flag} (${perConnection.env}) must be at least ` +
        `--max-message-bytes + 5 (${config.maxMessageBytes + 5}), got ` +
        `${config.requestBufferPerConnection}`,
    );
  }
  if (config.requestBufferTotal < config.requestBufferPerConnection) {
    const total = SETTINGS.requestBufferTotal;
    throw new ConfigError(
      `--${total.flag} (${total.env}) must be at least --${perConnection.flag} ` +
        `(${config.requestBufferPerConnection}), got ${config.requestBufferTotal}`,
    );
  }
  return config;
}

/** Settings that only make sense together. */
function checkAuthSettings(config: Readonly<CoreConfig>): void {
  if ((config.tlsCert === "") !== (config.tlsKey === "")) {
    throw new ConfigError("--tls-cert and --tls-key go together");
  }
  if (
    config.brokerCa !== "" &&
    (config.broker === "" || new URL(config.broker).protocol !== "rediss:")
  ) {
    throw new ConfigError("--broker-ca needs a rediss:// --broker");
  }
  if (config.maxConnectionsPerIp > 0 && config.transport !== "h2") {
    // grpc-js's own listener has no hook for it: not silently off.
    throw new ConfigError(
      "--max-connections-per-ip needs --transport h2 (the default)",
    );
  }
  if (config.tlsCert !== "" && config.transport !== "h2") {
    // grpc-js's TLS listener on Deno's node:http2 fails the handshake.
    throw new ConfigError("--tls-cert needs --transport h2 (the default)");
  }
  const keyed = config.jwtSecret !== "" || config.jwtPublicKey !== "";
  if (!keyed && (config.jwtIssuer !== "" || config.jwtAudience !== "")) {
    throw new ConfigError(
      "--jwt-issuer and --jwt-audience need --jwt-secret or --jwt-public-key",
    );
  }
  if (config.rateBurst > 0 && config.rateLimit === 0) {
    throw new ConfigError("--rate-burst needs --rate-limit");
  }
}

/**
 * Completes a partial config (tests, embedding) with the defaults, except
 * that an embedded server keeps history in memory unless told otherwise:
 * a test or a library user should not find a `data/` directory written in
 * its working directory. The process (main.ts) uses DEFAULT_CORE_CONFIG.
 */
export function resolveCoreConfig(
  options: Partial<CoreConfig> = {},
): Readonly<CoreConfig> {
  const config: CoreConfig = {
    ...DEFAULT_CORE_CONFIG,
    store: "memory",
    ...options,
  };
  checkAuthSettings(config);
  return Object.freeze(config);
}
