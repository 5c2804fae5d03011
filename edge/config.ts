/**
 * Edge configuration, parsed once into a frozen, complete object.
 *
 * Flags win over environment variables, which win over defaults. Bad values
 * fail at start-up with a message naming both the flag and the variable, so
 * a typo on Deno Deploy shows in the first log line instead of as a
 * differently behaving gateway.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { argsErrorLine } from "../config/args_error.ts";
import { joinNegativeValues } from "../config/negative_values.ts";
import { hs256SecretError } from "../auth/secret.ts";
import { parseNumberFlag } from "../config/number_flag.ts";

/** Everything the edge needs to know about its deployment. */
export interface EdgeConfig {
  /** Interface for Deno.serve (ignored on Deno Deploy). */
  host: string;
  /** TCP port for Deno.serve; 0 picks a free one. */
  port: number;
  /**
   * Edge processes serving the port (edge/process_group.ts); above 1 only
   * for the self-hosted edge (edge/main.ts), ignored on Deno Deploy.
   */
  procs: number;
  /**
   * Core gRPC servers, http:// (h2c) or https:// (TLS); calls are balanced
   * over the healthy ones (comma-separated in the flag and variable).
   */
  upstream: readonly string[];
  /** Origins allowed by CORS; ["*"] means any. */
  allowedOrigins: readonly string[];
  /** Largest single message accepted in either direction. */
  maxMessageBytes: number;
  /**
   * The HTTP/2 client to the core: "h2" (the default: the edge's own client
   * on Deno.connect / Deno.connectTls) or "node" (node:http2).
   */
  upstreamClient: UpstreamClient;
  /**
   * The h2 client's keepalive: ms of silence on a connection with open calls
   * before it sends a PING; 0 turns keepalive off.
   */
  upstreamKeepaliveMs: number;
  /**
   * With several upstreams: ms a core may leave its health probes unanswered
   * before the calls running on it end UNAVAILABLE; 0 never.
   */
  upstreamStallMs: number;
  // --- operations: logs and /metrics ---
  /** One line per call on stdout: "text", "json", or "off". */
  logFormat: LogFormat;
  /** Bearer token `/metrics` requires; "" leaves it open. */
  metricsToken: string;

  // Who may speak (docs/auth.md). Empty strings mean "not set".
  /** Files with the TLS certificate chain and key (PEM): serve HTTPS. */
  tlsCert: string;
  tlsKey: string;
  /** File with a PEM CA for an https:// upstream with a private certificate. */
  upstreamCa: string;
  /**
   * Development only: the core's HS256 secret, to hand out tokens at
   * `GET /auth/dev-token?user=NAME`. Unset, that path is 204 (edge/app.ts).
   */
  devJwtSecret: string;
  /** `iss` of development tokens: the core's --jwt-issuer, if it has one. */
  devJwtIssuer: string;
  /** `aud` of development tokens: the core's --jwt-audience, if it has one. */
  devJwtAudience: string;
  /** Concurrent requests (each open stream counts) per client IP; 0: no limit. */
  maxRequestsPerIp: number;
  /** Concurrent WebSocket bridge sockets per client IP; 0: no limit. */
  maxWebSocketsPerIp: number;
  /**
   * Proxies in front of the edge that append to X-Forwarded-For; the
   * per-IP limits then read the client there (edge/ip_limits.ts). 0: the
   * TCP peer is the client and the header is ignored.
   */
  trustProxy: number;
  /**
   * Bidi calls (Chat): "refuse" checks the request body before the call
   * (edge/http1.ts: a chunked HTTP/1.1 body is refused UNIMPLEMENTED, as
   * connect-es does; one of declared length is read whole first); "allow"
   * takes every body as it comes, and then each streamed HTTP/1.1 call whose
   * client leaves before ending its body keeps a socket of the edge open for
   * good (Deno 2.9's HTTP/1.1 server never settles that body's read).
   */
  http1Bidi: Http1Bidi;
  /**
   * The WebSocket bridge at /ws: "on", or "off" (/ws answers 404). Deno 2.9
   * gathers a message sent in fragments without bound and keeps reading it
   * after the edge closes the socket (web/WEBSOCKET.md, "Limits"): an edge
   * open to untrusted clients without a proxy that bounds WebSocket messages
   * may turn it off.
   */
  webSocketBridge: "on" | "off";
}

/** What the edge does with a bidi call that came over HTTP/1.1. */
export type Http1Bidi = "refuse" | "allow";

/** The per-call log line formats. */
export type LogFormat = "text" | "json" | "off";

/** The upstream HTTP/2 client implementations. */
export type UpstreamClient = "h2" | "node";

/** The defaults, also used by tests that override one field. */
export const DEFAULT_EDGE_CONFIG: Readonly<EdgeConfig> = Object.freeze({
  host: "127.0.0.1",
  port: 8080,
  procs: 1,
  upstream: Object.freeze(["http://127.0.0.1:50051"]),
  allowedOrigins: Object.freeze(["*"]),
  maxMessageBytes: 10 * 1024 * 1024,
  upstreamClient: "h2",
  upstreamKeepaliveMs: 30_000,
  upstreamStallMs: 5000,
  logFormat: "text",
  metricsToken: "",
  tlsCert: "",
  tlsKey: "",
  upstreamCa: "",
  devJwtSecret: "",
  devJwtIssuer: "",
  devJwtAudience: "",
  maxRequestsPerIp: 0,
  maxWebSocketsPerIp: 0,
  trustProxy: 0,
  http1Bidi: "refuse",
  webSocketBridge: "on",
});

/** Thrown for any value the edge refuses to start with. */
export class EdgeConfigError extends Error {
  override readonly name = "EdgeConfigError";
}

const SETTINGS = {
  host: { flag: "host", env: "HOST" },
  port: { flag: "port", env: "PORT" },
  procs: { flag: "procs", env: "EDGE_PROCS" },
  upstream: { flag: "upstream", env: "UPSTREAM" },
  allowedOrigins: { flag: "allowed-origins", env: "ALLOWED_ORIGINS" },
  maxMessageBytes: { flag: "max-message-bytes", env: "MAX_MESSAGE_BYTES" },
  upstreamClient: { flag: "upstream-client", env: "UPSTREAM_CLIENT" },
  upstreamKeepaliveMs: {
    flag: "upstream-keepalive-ms",
    env: "UPSTREAM_KEEPALIVE_MS",
  },
  upstreamStallMs: { flag: "upstream-stall-ms", env: "UPSTREAM_STALL_MS" },
  logFormat: { flag: "log-format", env: "LOG_FORMAT" },
  metricsToken: { flag: "metrics-token", env: "METRICS_TOKEN" },
  tlsCert: { flag: "tls-cert", env: "TLS_CERT" },
  tlsKey: { flag: "tls-key", env: "TLS_KEY" },
  upstreamCa: { flag: "upstream-ca", env: "UPSTREAM_CA" },
  devJwtSecret: { flag: "dev-jwt-secret", env: "EDGE_DEV_JWT_SECRET" },
  devJwtIssuer: { flag: "dev-jwt-issuer", env: "EDGE_DEV_JWT_ISSUER" },
  devJwtAudience: { flag: "dev-jwt-audience", env: "EDGE_DEV_JWT_AUDIENCE" },
  maxRequestsPerIp: {
    flag: "max-requests-per-ip",
    env: "MAX_REQUESTS_PER_IP",
  },
  maxWebSocketsPerIp: {
    flag: "max-websockets-per-ip",
    env: "MAX_WEBSOCKETS_PER_IP",
  },
  trustProxy: { flag: "trust-proxy", env: "TRUST_PROXY" },
  http1Bidi: { flag: "http1-bidi", env: "EDGE_HTTP1_BIDI" },
  webSocketBridge: {
    flag: "websocket-bridge",
    env: "EDGE_WEBSOCKET_BRIDGE",
  },
} as const satisfies Record<keyof EdgeConfig, { flag: string; env: string }>;

/** The flag and environment variable of every setting (for --help). */
export const EDGE_SETTINGS: typeof SETTINGS = SETTINGS;

type Parsers = {
  [K in keyof EdgeConfig]: (raw: string, name: string) => EdgeConfig[K];
};

const PARSERS: Parsers = {
  host(raw, name) {
    if (raw.trim() === "") {
      throw new EdgeConfigError(`${name} must not be empty`);
    }
    return raw;
  },
  port: (raw, name) => integer(raw, name, 0, 65535),
  procs: (raw, name) => integer(raw, name, 1, 64),
  maxMessageBytes: (raw, name) => integer(raw, name, 1024, 2 ** 31 - 1),
  upstreamKeepaliveMs: (raw, name) => integer(raw, name, 0, 2 ** 31 - 1),
  upstreamStallMs(raw, name) {
    const ms = integer(raw, name, 0, 2 ** 31 - 1);
    // Calls end after two unanswered probes (each waits 2 s) at least this
    // long apart: below 2 s the setting would only read as a promise.
    if (ms !== 0 && ms < 2000) {
      throw new EdgeConfigError(
        `${name} must be 0 or at least 2000, got ${ms}`,
      );
    }
    return ms;
  },
  tlsCert: (raw) => raw,
  tlsKey: (raw) => raw,
  upstreamCa: (raw) => raw,
  devJwtSecret(raw, name) {
    // The core refuses shorter HS256 secrets; fail here too, not per call.
    const short = hs256SecretError(name, raw);
    if (short !== undefined) throw new EdgeConfigError(short);
    return raw;
  },
  devJwtIssuer: (raw) => raw,
  devJwtAudience: (raw) => raw,
  maxRequestsPerIp: (raw, name) => integer(raw, name, 0, 1_000_000_000),
  maxWebSocketsPerIp: (raw, name) => integer(raw, name, 0, 1_000_000_000),
  trustProxy: (raw, name) => integer(raw, name, 0, 100),
  http1Bidi(raw, name) {
    if (raw !== "refuse" && raw !== "allow") {
      throw new EdgeConfigError(
        `${name} must be "refuse" or "allow", got "${raw}"`,
      );
    }
    return raw;
  },
  webSocketBridge(raw, name) {
    if (raw !== "on" && raw !== "off") {
      throw new EdgeConfigError(`${name} must be "on" or "off", got "${raw}"`);
    }
    return raw;
  },
  upstreamClient(raw, name) {
    if (raw !== "h2" && raw !== "node") {
      throw new EdgeConfigError(`${name} must be "h2" or "node", got "${raw}"`);
    }
    return raw;
  },
  upstream(raw, name) {
    const list = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (list.length === 0) {
      throw new EdgeConfigError(`${name} must not be empty`);
    }
    const origins = list.map((u) => origin(u, name));
    if (new Set(origins).size !== origins.length) {
      throw new EdgeConfigError(`${name} lists a core twice: "${raw}"`);
    }
    return Object.freeze(origins);
  },
  logFormat(raw, name) {
    if (raw !== "text" && raw !== "json" && raw !== "off") {
      throw new EdgeConfigError(
        `${name} must be "text", "json" or "off", got "${raw}"`,
      );
    }
    return raw;
  },
  metricsToken(raw, name) {
    // The token goes into an HTTP header comparison: no spaces or controls.
    if (raw !== "" && !/^[\x21-\x7e]+$/.test(raw)) {
      throw new EdgeConfigError(
        `${name} must be printable ASCII without spaces`,
      );
    }
    return raw;
  },
  allowedOrigins(raw, name) {
    const list = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (list.length === 0) {
      throw new EdgeConfigError(
        `${name} must not be empty (use * for any origin)`,
      );
    }
    if (list.includes("*")) return Object.freeze(["*"]);
    return Object.freeze(list.map((o) => {
      let url: URL | undefined;
      try {
        url = new URL(o);
      } catch { /* reported below */ }
      if (!url || url.origin !== o.replace(/\/$/, "")) {
        throw new EdgeConfigError(
          `${name} entries must be origins like https://chat.example.com, got "${o}"`,
        );
      }
      return url.origin;
    }));
  },
};

/** One core's URL: an http: or https: origin with no path. */
function origin(raw: string, name: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new EdgeConfigError(
      `${name} must be a URL like http://127.0.0.1:50051, got "${raw}"`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new EdgeConfigError(
      `${name} must use http: (h2c) or https: (TLS), got "${url.protocol}"`,
    );
  }
  if (
    (url.pathname !== "/" && url.pathname !== "") || url.search || url.hash
  ) {
    throw new EdgeConfigError(
      `${name} must be an origin without a path, got "${raw}"`,
    );
  }
  return url.origin;
}

function integer(raw: string, name: string, min: number, max: number): number {
  return parseNumberFlag(name, raw, { min, max }, EdgeConfigError);
}

/**
 * Builds the config from command-line flags and environment variables.
 *
 * @example
 * ```ts
 * const config = parseEdgeConfig(["--port", "9000"], { UPSTREAM: "http://core:50051" });
 * ```
 */
export function parseEdgeConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Readonly<EdgeConfig> {
  let values: Record<string, string | undefined>;
  const options = Object.fromEntries(
    Object.values(SETTINGS).map((s) => [s.flag, { type: "string" as const }]),
  );
  try {
    ({ values } = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      strict: true,
      allowPositionals: false,
    }) as { values: Record<string, string | undefined> });
  } catch (err) {
    throw new EdgeConfigError(`${argsErrorLine(err)} (see --help)`);
  }
  const config: Record<string, unknown> = { ...DEFAULT_EDGE_CONFIG };
  for (const key of Object.keys(SETTINGS) as (keyof EdgeConfig)[]) {
    const { flag, env: envName } = SETTINGS[key];
    const parse = PARSERS[key] as (raw: string, name: string) => unknown;
    if (values[flag] !== undefined) {
      config[key] = parse(values[flag], `--${flag}`);
    } else if (env[envName] !== undefined) {
      config[key] = parse(env[envName], envName);
    }
  }
  if ((config.tlsCert === "") !== (config.tlsKey === "")) {
    throw new EdgeConfigError("--tls-cert and --tls-key go together");
  }
  if (
    config.devJwtSecret === "" &&
    (config.devJwtIssuer !== "" || config.devJwtAudience !== "")
  ) {
    // Nothing would be signed with them: not silently unused (as the core's
    // --jwt-issuer without a key).
    throw new EdgeConfigError(
      "--dev-jwt-issuer and --dev-jwt-audience need --dev-jwt-secret",
    );
  }
  return Object.freeze(config as unknown as EdgeConfig);
}
