/**
 * `--help` of the edge: every flag with its environment variable, default
 * and meaning, built from the settings table so that it cannot miss one.
 */
import {
  DEFAULT_EDGE_CONFIG,
  EDGE_SETTINGS,
  type EdgeConfig,
} from "./config.ts";

/** One line of meaning per setting; the README's table says more. */
export const EDGE_SETTING_HELP: Readonly<Record<keyof EdgeConfig, string>> = {
  host: "interface to listen on (ignored on Deno Deploy)",
  port: "HTTP port; 0 picks a free one (ignored on Deno Deploy)",
  procs: "edge processes on the port (reusePort, Linux); >1 needs --allow-run",
  upstream: "the core, http:// (h2c) or https:// (TLS)",
  allowedOrigins: "comma-separated origins allowed by CORS; * for any",
  maxMessageBytes: "largest message, each way",
  upstreamClient: "h2 (the edge's own HTTP/2 client) | node (node:http2)",
  upstreamKeepaliveMs:
    "PING after this much silence on a busy connection; 0: off",
  upstreamStallMs:
    "several upstreams: a core's probes unanswered this long end its calls UNAVAILABLE; 0: never",
  logFormat: "text | json | off: one line per call",
  metricsToken: "bearer token GET /metrics requires; empty: open",
  tlsCert: "PEM certificate chain file: serve HTTPS (with --tls-key)",
  tlsKey: "PEM private key file for --tls-cert",
  upstreamCa: "PEM CA file for an https:// upstream with a private certificate",
  devJwtSecret:
    "DEVELOPMENT: the core's HS256 secret, to sign tokens at /auth/dev-token",
  devJwtIssuer: "iss of /auth/dev-token tokens (the core's --jwt-issuer)",
  devJwtAudience: "aud of /auth/dev-token tokens (the core's --jwt-audience)",
  maxRequestsPerIp: "concurrent requests per client IP; 0: no limit",
  maxWebSocketsPerIp:
    "concurrent WebSocket bridge sockets per client IP; 0: no limit",
  trustProxy:
    "proxies in front that append X-Forwarded-For; 0: the TCP peer is the client",
  http1Bidi:
    "refuse | allow: bidi calls (Chat) with a chunked HTTP/1.1 body (one of declared length is read whole first); allowed, a client leaving mid-body leaks a socket (Deno 2.9)",
  webSocketBridge:
    "on | off: the WebSocket bridge at /ws (off: 404); Deno 2.9 does not bound a message sent in fragments",
};

/** The whole --help text. */
export function edgeUsage(command = "deno task serve:edge"): string {
  const rows = (Object.keys(EDGE_SETTINGS) as (keyof EdgeConfig)[]).map(
    (key) => {
      const { flag, env } = EDGE_SETTINGS[key];
      return [
        `--${flag}`,
        env,
        String(DEFAULT_EDGE_CONFIG[key]),
        EDGE_SETTING_HELP[key],
      ];
    },
  );
  const widths = [0, 1, 2].map((i) =>
    Math.max(...rows.map((r) => r[i].length))
  );
  const line = (r: string[]) =>
    `  ${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${
      r[2].padEnd(widths[2])
    }  ${r[3]}`.trimEnd();
  return [
    `Usage: ${command} [flags]`,
    "",
    "The chat edge: gRPC-Web, Connect, a WebSocket bridge and the chat page",
    "for browsers, each call forwarded to the core over HTTP/2.",
    "Flags win over environment variables.",
    "",
    line(["flag", "env", "default", ""]),
    ...rows.map(line),
    line(["--help", "", "", "this text"]),
    "",
    "Exit codes: 0 stopped cleanly, 1 failed, 2 bad flag or value, port in use.",
  ].join("\n");
}
