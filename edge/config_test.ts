import assert from "node:assert/strict";
import {
  DEFAULT_EDGE_CONFIG,
  EdgeConfigError,
  parseEdgeConfig,
} from "./config.ts";

const rejects = (
  args: string[],
  env: Record<string, string>,
  pattern: RegExp,
) =>
  assert.throws(
    () => parseEdgeConfig(args, env),
    (e) => e instanceof EdgeConfigError && pattern.test(e.message),
  );

Deno.test("parseEdgeConfig() returns frozen defaults with no flags or env", () => {
  const c = parseEdgeConfig([], {});
  assert.deepEqual(c, {
    host: "127.0.0.1",
    port: 8080,
    procs: 1,
    upstream: ["http://127.0.0.1:50051"],
    allowedOrigins: ["*"],
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
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.allowedOrigins));
  assert.deepEqual(c, DEFAULT_EDGE_CONFIG);
});

Deno.test("parseEdgeConfig() takes --host over HOST and refuses an empty one", () => {
  assert.equal(
    parseEdgeConfig(["--host", "127.0.0.1"], { HOST: "::" }).host,
    "127.0.0.1",
  );
  assert.equal(parseEdgeConfig([], { HOST: "::1" }).host, "::1");
  assert.throws(
    () => parseEdgeConfig(["--host", " "], {}),
    /--host must not be empty/,
  );
});

Deno.test("parseEdgeConfig() reads env and lets flags win", () => {
  const env = {
    PORT: "9000",
    UPSTREAM: "https://core.internal:443",
    ALLOWED_ORIGINS: "https://a.example, https://b.example",
    MAX_MESSAGE_BYTES: "2048",
  };
  const fromEnv = parseEdgeConfig([], env);
  assert.equal(fromEnv.port, 9000);
  assert.deepEqual(fromEnv.upstream, ["https://core.internal"]);
  assert.deepEqual(fromEnv.allowedOrigins, [
    "https://a.example",
    "https://b.example",
  ]);
  assert.equal(fromEnv.maxMessageBytes, 2048);
  const fromFlags = parseEdgeConfig([
    "--port=0",
    "--upstream",
    "http://10.0.0.1:6000",
    "--allowed-origins",
    "*",
  ], env);
  assert.equal(fromFlags.port, 0);
  assert.deepEqual(fromFlags.upstream, ["http://10.0.0.1:6000"]);
  assert.deepEqual(fromFlags.allowedOrigins, ["*"]);
});

Deno.test("parseEdgeConfig() rejects bad values naming the flag or variable", () => {
  rejects(["--port", "70000"], {}, /--port must be an integer from 0 to 65535/);
  rejects([], { PORT: "eighty" }, /^PORT must be an integer/);
  rejects(
    ["--upstream", "core:50051"],
    {},
    /--upstream must use http: \(h2c\) or https:/,
  );
  rejects([], { UPSTREAM: "not a url" }, /^UPSTREAM must be a URL/);
  rejects(["--upstream", "http://core:1/path"], {}, /without a path/);
  rejects([], { ALLOWED_ORIGINS: " , " }, /must not be empty/);
  rejects([], { ALLOWED_ORIGINS: "app.example" }, /origins like/);
  rejects(["--max-message-bytes", "10"], {}, /from 1024 to/);
  rejects(["--verbose"], {}, /verbose/);
  rejects(["extra"], {}, /extra/);
});

Deno.test("parseEdgeConfig() picks the upstream client from --upstream-client or UPSTREAM_CLIENT", () => {
  assert.equal(parseEdgeConfig([], {}).upstreamClient, "h2");
  assert.equal(
    parseEdgeConfig([], { UPSTREAM_CLIENT: "node" }).upstreamClient,
    "node",
  );
  assert.equal(
    parseEdgeConfig(["--upstream-client", "h2"], { UPSTREAM_CLIENT: "node" })
      .upstreamClient,
    "h2",
  );
  rejects(
    ["--upstream-client", "fetch"],
    {},
    /--upstream-client must be "h2" or "node", got "fetch"/,
  );
  rejects([], { UPSTREAM_CLIENT: "H2" }, /^UPSTREAM_CLIENT must be/);
});

Deno.test("parseEdgeConfig() turns the WebSocket bridge off with --websocket-bridge off or EDGE_WEBSOCKET_BRIDGE=off", () => {
  assert.equal(parseEdgeConfig([], {}).webSocketBridge, "on");
  assert.equal(
    parseEdgeConfig([], { EDGE_WEBSOCKET_BRIDGE: "off" }).webSocketBridge,
    "off",
  );
  assert.equal(
    parseEdgeConfig(["--websocket-bridge", "on"], {
      EDGE_WEBSOCKET_BRIDGE: "off",
    }).webSocketBridge,
    "on",
  );
  rejects(
    ["--websocket-bridge", "no"],
    {},
    /^--websocket-bridge must be "on" or "off", got "no"$/,
  );
});

Deno.test("parseEdgeConfig() takes what to do with bidi over HTTP/1.1 from --http1-bidi or EDGE_HTTP1_BIDI", () => {
  assert.equal(parseEdgeConfig([], {}).http1Bidi, "refuse");
  assert.equal(
    parseEdgeConfig([], { EDGE_HTTP1_BIDI: "allow" }).http1Bidi,
    "allow",
  );
  assert.equal(
    parseEdgeConfig(["--http1-bidi", "refuse"], { EDGE_HTTP1_BIDI: "allow" })
      .http1Bidi,
    "refuse",
  );
  rejects(
    ["--http1-bidi", "yes"],
    {},
    /--http1-bidi must be "refuse" or "allow", got "yes"/,
  );
  rejects([], { EDGE_HTTP1_BIDI: "Allow" }, /^EDGE_HTTP1_BIDI must be/);
});

Deno.test("parseEdgeConfig() takes the upstream keepalive from --upstream-keepalive-ms or UPSTREAM_KEEPALIVE_MS", () => {
  assert.equal(parseEdgeConfig([], {}).upstreamKeepaliveMs, 30_000);
  assert.equal(
    parseEdgeConfig([], { UPSTREAM_KEEPALIVE_MS: "300000" })
      .upstreamKeepaliveMs,
    300_000,
  );
  assert.equal(
    parseEdgeConfig(["--upstream-keepalive-ms", "0"], {
      UPSTREAM_KEEPALIVE_MS: "300000",
    }).upstreamKeepaliveMs,
    0,
  );
  rejects(
    ["--upstream-keepalive-ms=-1"],
    {},
    /--upstream-keepalive-ms must be/,
  );
  rejects(
    [],
    { UPSTREAM_KEEPALIVE_MS: "soon" },
    /^UPSTREAM_KEEPALIVE_MS must be/,
  );
});

Deno.test("parseEdgeConfig() takes a comma-separated list of cores in --upstream or UPSTREAM", () => {
  assert.deepEqual(
    parseEdgeConfig([], {
      UPSTREAM: "http://a:50051, http://b:50051/,https://c",
    }).upstream,
    ["http://a:50051", "http://b:50051", "https://c"],
  );
  rejects(["--upstream", " , "], {}, /--upstream must not be empty/);
  rejects(
    [],
    { UPSTREAM: "http://a:1,http://a:1/" },
    /UPSTREAM lists a core twice/,
  );
  rejects(["--upstream", "http://a:1,b:2"], {}, /--upstream must use http:/);
});

Deno.test("parseEdgeConfig() reads --log-format and --metrics-token, refusing bad values", () => {
  const c = parseEdgeConfig(["--log-format", "json"], {
    METRICS_TOKEN: "t0ken",
  });
  assert.equal(c.logFormat, "json");
  assert.equal(c.metricsToken, "t0ken");
  assert.equal(parseEdgeConfig([], { LOG_FORMAT: "off" }).logFormat, "off");
  rejects(
    ["--log-format", "xml"],
    {},
    /--log-format must be "text", "json" or "off"/,
  );
  rejects([], { LOG_FORMAT: "JSON" }, /LOG_FORMAT must be/);
  rejects(
    ["--metrics-token", "has space"],
    {},
    /--metrics-token must be printable ASCII/,
  );
});

Deno.test("parseEdgeConfig() reads the TLS, dev-token and per-IP settings", () => {
  const c = parseEdgeConfig([
    "--tls-cert=c.pem",
    "--tls-key=k.pem",
    "--max-requests-per-ip=50",
  ], {
    UPSTREAM_CA: "ca.pem",
    EDGE_DEV_JWT_SECRET: "d".repeat(32),
    MAX_WEBSOCKETS_PER_IP: "4",
  });
  assert.equal(c.tlsCert, "c.pem");
  assert.equal(c.tlsKey, "k.pem");
  assert.equal(c.upstreamCa, "ca.pem");
  assert.equal(c.devJwtSecret, "d".repeat(32));
  assert.equal(c.maxRequestsPerIp, 50);
  assert.equal(c.maxWebSocketsPerIp, 4);
  rejects(["--tls-key=k.pem"], {}, /--tls-cert and --tls-key go together/);
  rejects([], { EDGE_DEV_JWT_SECRET: "short" }, /at least 32 bytes/);
  for (const args of [["--dev-jwt-issuer=i"], ["--dev-jwt-audience=a"]]) {
    rejects(
      args,
      {},
      /^--dev-jwt-issuer and --dev-jwt-audience need --dev-jwt-secret$/,
    );
  }
  assert.equal(
    parseEdgeConfig(["--dev-jwt-issuer=i"], {
      EDGE_DEV_JWT_SECRET: "d".repeat(32),
    }).devJwtIssuer,
    "i",
  );
  rejects(["--max-requests-per-ip=-1"], {}, /integer from 0/);
});

Deno.test("parseEdgeConfig() takes --procs over EDGE_PROCS, from 1 to 64", () => {
  assert.equal(parseEdgeConfig([], { EDGE_PROCS: "3" }).procs, 3);
  assert.equal(
    parseEdgeConfig(["--procs", "2"], { EDGE_PROCS: "3" }).procs,
    2,
  );
  for (const bad of ["0", "65", "1.5", ""]) {
    assert.throws(
      () => parseEdgeConfig([], { EDGE_PROCS: bad }),
      EdgeConfigError,
    );
  }
});

Deno.test("parseEdgeConfig: --upstream-stall-ms is 0 or at least 2000", () => {
  assert.equal(
    parseEdgeConfig(["--upstream-stall-ms", "0"], {}).upstreamStallMs,
    0,
  );
  assert.equal(
    parseEdgeConfig([], { UPSTREAM_STALL_MS: "8000" }).upstreamStallMs,
    8000,
  );
  assert.throws(
    () => parseEdgeConfig(["--upstream-stall-ms", "500"], {}),
    /--upstream-stall-ms must be 0 or at least 2000, got 500/,
  );
});
