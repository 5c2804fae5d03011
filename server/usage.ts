/**
 * `--help` of the core: every flag with its environment variable, default
 * and meaning, built from the settings table so that it cannot miss one.
 */
import {
  CORE_SETTINGS,
  type CoreConfig,
  DEFAULT_CORE_CONFIG,
} from "./config.ts";

/** One line of meaning per setting; the README's table says more. */
export const SETTING_HELP: Readonly<Record<keyof CoreConfig, string>> = {
  host: "interface to listen on",
  port: "gRPC port (h2c); 0 picks a free one",
  maxMessageBytes: "largest message, each way",
  maxConcurrentStreams: "HTTP/2 streams per connection",
  maxConnections:
    "connections served at once (h2 transport); one more is closed at once; 0: no bound",
  maxConnectionsPerIp:
    "connections served at once from one client address (an IPv6 client by its /64; h2 transport); 0: no bound",
  queueSize: "messages a slow subscriber may queue",
  queueBytes: "bytes a slow subscriber may queue (0: no bound)",
  slowConsumer: "drop | disconnect, when a subscriber's queue is full",
  slowConsumerGraceMs:
    "time a disconnected slow subscriber has to take its status",
  aliveIntervalMs: 'period of Chat\'s "Server is alive!"; 0 turns it off',
  shutdownGraceMs: "how long shutdown waits for calls to end",
  presence: "announce JOIN/LEAVE to rooms",
  instanceId: "label on every metric",
  transport: "h2 (the core's own HTTP/2) | node (Deno's node:http2)",
  goawayGuard: "on | off, with --transport node only",
  requestBufferPerConnection:
    "h2: bytes of unfinished requests one connection may hold",
  requestBufferTotal: "h2: the same across all connections",
  keepaliveIntervalMs: "h2: PING a client silent this long; 0 turns it off",
  keepaliveTimeoutMs: "h2: close a connection whose PING gets no answer",
  idleTimeoutMs: "h2: close a connection with no call this long; 0: never",
  logLevel: "error | info | debug",
  metricsPort: "Prometheus GET /metrics port; 0 picks one; off: none",
  logFormat: "text | json",
  jwtSecret: "HS256 secret, at least 32 bytes: tokens required",
  jwtPublicKey: "PEM public key file (RS256, ES256, EdDSA): tokens required",
  jwtIssuer: "required iss claim",
  jwtAudience: "required aud claim",
  jwtLeewaySeconds: "clock skew allowed on exp and nbf",
  jwtMaxVerifying:
    "distinct tokens verified at once; past it UNAVAILABLE; 0: no cap",
  rateLimit: "messages per second per user (per connection, auth off); 0: off",
  rateBurst: "messages at once after a quiet spell; 0: the rate limit",
  maxSubscriptions: "concurrent subscriptions per user; 0: no limit",
  tlsCert: "PEM certificate chain file: serve h2 over TLS (with --tls-key)",
  tlsKey: "PEM private key file for --tls-cert",
  store:
    "log (durable, in --data-dir) | sqlite (durable, chat.sqlite) | memory (lost on restart)",
  dataDir: "directory of the history (log files, or chat.sqlite)",
  historySize: "messages kept per room",
  historyTtlMs: "how long a message is kept: 500ms, 90s, 30m, 24h, 7d; 0: ever",
  historyBytes:
    "message bytes kept per room in memory (log, memory); the last always",
  historyMaxBytes:
    "message bytes kept by all rooms (log, memory); least recently written trimmed first",
  historyMaxRooms:
    "rooms kept (log, sqlite, memory); past it the least recently written are forgotten",
  idempotencyWindowMs:
    "how long an idempotency_key is remembered: 5m, 1h; 0: not checked",
  idempotencyKeys:
    "idempotency keys remembered at most, over all rooms (and per room in Redis)",
  broker:
    "redis[s]://[:password@]host:port[/db]: history in Redis, rooms shared by every core on it",
  brokerTimeoutMs:
    "how long a Redis command waits for its answer: 500ms, 5s; then UNAVAILABLE",
  brokerCa: "PEM file of the CA(s) a rediss:// broker's certificate chains to",
};

/** Settings given as durations (`90s`, `24h`; a bare number is seconds). */
const DURATIONS: ReadonlySet<keyof CoreConfig> = new Set([
  "historyTtlMs",
  "brokerTimeoutMs",
  "idempotencyWindowMs",
]);

/** `86400000` as `24h`: the largest unit that divides it. */
function showDuration(ms: number): string {
  for (
    const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], [
      "s",
      1000,
    ]] as const
  ) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return ms === 0 ? "0" : `${ms}ms`;
}

/** The whole --help text. */
export function coreUsage(command = "deno task serve:core"): string {
  const rows = (Object.keys(CORE_SETTINGS) as (keyof CoreConfig)[]).map(
    (key) => {
      const { flag, env } = CORE_SETTINGS[key];
      const fallback = DEFAULT_CORE_CONFIG[key];
      const shown = fallback === null
        ? "off"
        : DURATIONS.has(key)
        ? showDuration(fallback as number)
        : typeof fallback === "boolean"
        ? (fallback ? "on" : "off")
        : String(fallback);
      return [`--${flag}`, env, shown, SETTING_HELP[key]];
    },
  );
  const widths = [0, 1, 2].map((i) =>
    Math.max(...rows.map((r) => r[i].length))
  );
  return [
    `Usage: ${command} [flags]`,
    "",
    "The chat core: chat.ChatService over gRPC (h2c), with health, reflection",
    "and Prometheus metrics. Flags win over environment variables.",
    "",
    `  ${"flag".padEnd(widths[0])}  ${"env".padEnd(widths[1])}  ${
      "default".padEnd(widths[2])
    }`,
    ...rows.map((r) =>
      `  ${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${
        r[2].padEnd(widths[2])
      }  ${r[3]}`
    ),
    `  ${"--help".padEnd(widths[0])}  this text`,
    "",
    "Exit codes: 0 stopped cleanly, 1 failed, 2 bad flag or value, port in use,",
    "unreadable data file.",
  ].join("\n");
}
