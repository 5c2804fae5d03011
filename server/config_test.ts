import assert from "node:assert/strict";
import {
  ConfigError,
  DEFAULT_CORE_CONFIG,
  parseCoreConfig,
  readSettingFile,
  redactUrl,
} from "./config.ts";

Deno.test("parseCoreConfig() gives the defaults with no flags or env", () => {
  const config = parseCoreConfig([], {});
  assert.deepEqual(config, DEFAULT_CORE_CONFIG);
  assert.equal(config.port, 50051);
  assert.equal(config.host, "127.0.0.1");
  assert.equal(config.maxMessageBytes, 10 * 1024 * 1024);
  assert.equal(config.maxConcurrentStreams, 1000);
  assert.equal(config.queueSize, 100);
  assert.ok(Object.isFrozen(config));
});

Deno.test("parseCoreConfig() lets flags win over env", () => {
  const config = parseCoreConfig([
    "--port",
    "6000",
    "--slow-consumer=disconnect",
    "--presence",
  ], {
    PORT: "7000",
    HOST: "0.0.0.0",
    CHAT_QUEUE_SIZE: "5",
    CHAT_SLOW_CONSUMER: "drop",
  });
  assert.equal(config.port, 6000);
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.queueSize, 5);
  assert.equal(config.slowConsumer, "disconnect");
  assert.equal(config.presence, true);
});

Deno.test("parseCoreConfig() rejects bad values with the flag or variable named", () => {
  const bad: [string[], Record<string, string>, RegExp][] = [
    [
      ["--port", "70000"],
      {},
      /--port must be an integer from 0 to 65535, got "70000"/,
    ],
    [[], { PORT: "http" }, /PORT must be an integer/],
    [
      ["--slow-consumer", "block"],
      {},
      /--slow-consumer must be one of drop, disconnect/,
    ],
    [["--queue-size", "0"], {}, /--queue-size must be an integer from 1/],
    [
      [],
      { CHAT_MAX_MESSAGE_BYTES: "-1" },
      /CHAT_MAX_MESSAGE_BYTES must be an integer/,
    ],
    [["--nope"], {}, /Unknown option '--nope'/],
    [[], { CHAT_PRESENCE: "yes" }, /CHAT_PRESENCE must be one of/],
    [
      ["--metrics-port", "http"],
      {},
      /--metrics-port must be an integer from 0 to 65535 or "off", got "http"/,
    ],
    [[], { LOG_FORMAT: "xml" }, /LOG_FORMAT must be one of text, json/],
  ];
  for (const [args, env, message] of bad) {
    assert.throws(() => parseCoreConfig(args, env), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, message);
      return true;
    });
  }
});

Deno.test("parseCoreConfig() reads the history flags: store, data dir, size, TTL durations", () => {
  const defaults = parseCoreConfig([], {});
  assert.equal(defaults.store, "log");
  assert.equal(parseCoreConfig(["--store", "sqlite"], {}).store, "sqlite");
  assert.equal(defaults.dataDir, "data");
  assert.equal(defaults.historySize, 1000);
  assert.equal(defaults.historyTtlMs, 24 * 3600 * 1000);
  const config = parseCoreConfig(
    ["--store", "memory", "--history-size", "5", "--history-ttl", "90s"],
    { CHAT_DATA_DIR: "/tmp/chat" },
  );
  assert.equal(config.store, "memory");
  assert.equal(config.dataDir, "/tmp/chat");
  assert.equal(config.historySize, 5);
  assert.equal(config.historyTtlMs, 90_000);
  for (
    const [raw, ms] of [["0", 0], ["30m", 1_800_000], ["500ms", 500], [
      "7d",
      604_800_000,
    ], ["12", 12_000]] as const
  ) {
    assert.equal(parseCoreConfig(["--history-ttl", raw], {}).historyTtlMs, ms);
  }
  for (const raw of ["1y", "-1h", "h", "400d"]) {
    assert.throws(
      () => parseCoreConfig([], { CHAT_HISTORY_TTL: raw }),
      /CHAT_HISTORY_TTL must be a duration/,
    );
  }
  assert.throws(
    () => parseCoreConfig(["--store", "redis"], {}),
    /--store must be one of log, sqlite, memory/,
  );
});

Deno.test("parseCoreConfig: --broker-timeout is a duration from 50ms to 10m, 5s by default", () => {
  assert.equal(parseCoreConfig([], {}).brokerTimeoutMs, 5000);
  assert.equal(
    parseCoreConfig(["--broker-timeout", "750ms"], {}).brokerTimeoutMs,
    750,
  );
  assert.equal(
    parseCoreConfig([], { CHAT_BROKER_TIMEOUT: "2" }).brokerTimeoutMs,
    2000,
  );
  for (const raw of ["0", "10ms", "11m", "soon"]) {
    assert.throws(
      () => parseCoreConfig(["--broker-timeout", raw], {}),
      /--broker-timeout must be a duration/,
    );
  }
});

Deno.test("parseCoreConfig() takes --broker or CHAT_BROKER as a redis:// URL and refuses others", () => {
  assert.equal(parseCoreConfig([], {}).broker, "");
  assert.equal(
    parseCoreConfig([], { CHAT_BROKER: "redis://10.0.0.5:6379/2" }).broker,
    "redis://10.0.0.5:6379/2",
  );
  assert.equal(
    parseCoreConfig(["--broker", "redis://r:1"], { CHAT_BROKER: "redis://x" })
      .broker,
    "redis://r:1",
  );
  for (const raw of ["localhost:6379", "http://r:1", "redis://r:1/x"]) {
    assert.throws(
      () => parseCoreConfig(["--broker", raw], {}),
      /--broker must be a Redis URL like redis:\/\/127\.0\.0\.1:6379/,
    );
  }
  // TLS, a password, a user and a password.
  for (
    const raw of [
      "rediss://cache.example:6380",
      "redis://:pw@10.0.0.5:6379/1",
      "rediss://app:p%40ss@cache.example:6380/0",
    ]
  ) {
    assert.equal(parseCoreConfig(["--broker", raw], {}).broker, raw);
  }
  assert.equal(
    parseCoreConfig(["--broker", "REDISS://r:1", "--broker-ca", "ca.pem"], {})
      .brokerCa,
    "ca.pem",
  );
  // A user with no password, and a bad %-escape: refused, not sent on.
  assert.throws(
    () => parseCoreConfig(["--broker", "redis://secret@r:1"], {}),
    /--broker: a user needs a password .*redis:\/\/:password@host/,
  );
  assert.throws(
    () => parseCoreConfig(["--broker", "redis://:50%@r:1"], {}),
    (e: Error) =>
      e instanceof ConfigError && /bad %-escape/.test(e.message) &&
      !e.message.includes("50%"),
  );
  for (const raw of ["redis://:pa/ss@r:1", "redis://:p@ss@r:1/x"]) {
    assert.throws(
      () => parseCoreConfig(["--broker", raw], {}),
      (e: Error) =>
        e instanceof ConfigError && e.message.includes("***") &&
        !e.message.includes("ss@"),
    );
  }
  // A refused URL's password is not echoed back.
  assert.throws(
    () => parseCoreConfig(["--broker", "redis://:hunter2@r:1/x"], {}),
    (e: Error) =>
      e instanceof ConfigError && e.message.includes("redis://:***@r:1/x") &&
      !e.message.includes("hunter2"),
  );
});

Deno.test("--broker-ca needs a rediss:// broker", () => {
  assert.equal(
    parseCoreConfig(["--broker", "rediss://r:1", "--broker-ca", "ca.pem"], {})
      .brokerCa,
    "ca.pem",
  );
  for (const broker of [[], ["--broker", "redis://r:1"]]) {
    assert.throws(
      () => parseCoreConfig([...broker, "--broker-ca", "ca.pem"], {}),
      /--broker-ca needs a rediss:\/\/ --broker/,
    );
  }
});

Deno.test("redactUrl() hides a URL's password and nothing else", () => {
  assert.equal(redactUrl("redis://:pw@h:1/2"), "redis://:***@h:1/2");
  assert.equal(
    redactUrl("rediss://user:p%40ss:word@h:1"),
    "rediss://user:***@h:1",
  );
  assert.equal(redactUrl("redis://user@h:1"), "redis://***@h:1");
  assert.equal(redactUrl("redis://:p@ss@h:1/0"), "redis://:***@h:1/0");
  assert.equal(redactUrl("redis://u:pa/ss@h:1"), "redis://u:***@h:1");
  assert.equal(redactUrl("not a url"), "not a url");
  assert.equal(redactUrl("redis://h:1"), "redis://h:1");
  assert.equal(redactUrl(""), "");
});

Deno.test("readSettingFile() names the setting and the file it cannot read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/ok.pem`, "PEM");
    assert.equal(await readSettingFile("tlsCert", `${dir}/ok.pem`), "PEM");
    await assert.rejects(
      () => readSettingFile("tlsCert", `${dir}/gone.pem`),
      (e: Error) =>
        e instanceof ConfigError &&
        /^cannot read --tls-cert \(CHAT_TLS_CERT\) .*gone\.pem: /.test(
          e.message,
        ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseCoreConfig() reads --metrics-port (off by default, 0, a port, off) and --log-format", () => {
  assert.equal(parseCoreConfig([], {}).metricsPort, null);
  assert.equal(parseCoreConfig([], {}).logFormat, "text");
  assert.equal(parseCoreConfig(["--metrics-port", "0"], {}).metricsPort, 0);
  assert.equal(
    parseCoreConfig([], { CHAT_METRICS_PORT: "9464" }).metricsPort,
    9464,
  );
  assert.equal(
    parseCoreConfig(["--metrics-port", "off"], { CHAT_METRICS_PORT: "9464" })
      .metricsPort,
    null,
  );
  assert.equal(
    parseCoreConfig([], { LOG_FORMAT: "json" }).logFormat,
    "json",
  );
});

Deno.test("parseCoreConfig() reads the h2 transport's request buffer, keepalive and idle settings", () => {
  const config = parseCoreConfig([
    "--request-buffer-per-connection",
    "33554432",
    "--keepalive-interval-ms=0",
  ], {
    CHAT_REQUEST_BUFFER_TOTAL: "268435456",
    CHAT_KEEPALIVE_TIMEOUT_MS: "5000",
    CHAT_IDLE_TIMEOUT_MS: "60000",
  });
  assert.equal(config.requestBufferPerConnection, 32 * 1024 * 1024);
  assert.equal(config.requestBufferTotal, 256 * 1024 * 1024);
  assert.equal(config.keepaliveIntervalMs, 0);
  assert.equal(config.keepaliveTimeoutMs, 5000);
  assert.equal(config.idleTimeoutMs, 60_000);
  assert.equal(
    DEFAULT_CORE_CONFIG.requestBufferPerConnection,
    64 * 1024 * 1024,
  );
  assert.equal(DEFAULT_CORE_CONFIG.requestBufferTotal, 512 * 1024 * 1024);
});

Deno.test("parseCoreConfig() rejects a request buffer that cannot hold one message, or a total below one connection's", () => {
  assert.throws(
    () => parseCoreConfig(["--request-buffer-per-connection", "1048576"], {}),
    /--request-buffer-per-connection \(CHAT_REQUEST_BUFFER_PER_CONNECTION\) must be at least --max-message-bytes \+ 5 \(10485765\)/,
  );
  assert.throws(
    () => parseCoreConfig([], { CHAT_REQUEST_BUFFER_TOTAL: "33554432" }),
    /--request-buffer-total \(CHAT_REQUEST_BUFFER_TOTAL\) must be at least --request-buffer-per-connection \(67108864\)/,
  );
});

Deno.test("parseCoreConfig() reads the auth, limit and TLS settings from flags and CHAT_* env", () => {
  const secret = "s".repeat(32);
  const config = parseCoreConfig([
    "--jwt-secret",
    secret,
    "--jwt-issuer=iss",
    "--rate-limit=5",
    "--tls-cert=c.pem",
    "--tls-key=k.pem",
  ], {
    CHAT_JWT_AUDIENCE: "aud",
    CHAT_JWT_PUBLIC_KEY: "key.pem",
    CHAT_RATE_BURST: "10",
    CHAT_MAX_SUBSCRIPTIONS: "3",
    CHAT_JWT_MAX_VERIFYING: "50",
  });
  assert.equal(config.jwtSecret, secret);
  assert.equal(config.jwtPublicKey, "key.pem");
  assert.equal(config.jwtIssuer, "iss");
  assert.equal(config.jwtAudience, "aud");
  assert.equal(config.rateLimit, 5);
  assert.equal(config.rateBurst, 10);
  assert.equal(config.maxSubscriptions, 3);
  assert.equal(config.jwtMaxVerifying, 50);
  assert.equal(config.tlsCert, "c.pem");
  assert.equal(config.tlsKey, "k.pem");
});

Deno.test("parseCoreConfig() refuses a short secret and settings that need another", () => {
  assert.throws(
    () => parseCoreConfig(["--jwt-secret", "short"], {}),
    (e) => e instanceof ConfigError && /at least 32 bytes/.test(e.message),
  );
  assert.throws(
    () => parseCoreConfig(["--tls-cert", "c.pem"], {}),
    /--tls-cert and --tls-key go together/,
  );
  assert.throws(
    () =>
      parseCoreConfig(
        ["--tls-cert", "c", "--tls-key", "k", "--transport", "node"],
        {},
      ),
    /--tls-cert needs --transport h2/,
  );
  assert.throws(
    () =>
      parseCoreConfig(
        ["--max-connections-per-ip", "4", "--transport", "node"],
        {},
      ),
    /--max-connections-per-ip needs --transport h2/,
  );
  assert.throws(
    () => parseCoreConfig(["--jwt-issuer", "x"], {}),
    /need --jwt-secret or --jwt-public-key/,
  );
  assert.throws(
    () => parseCoreConfig(["--rate-burst", "3"], {}),
    /--rate-burst needs --rate-limit/,
  );
});

Deno.test("parseCoreConfig() reads the connection bounds from flags and the environment, with the per-IP bound off by default", () => {
  const defaults = parseCoreConfig([], {});
  assert.equal(defaults.maxConnections, 10_000);
  assert.equal(defaults.maxConnectionsPerIp, 0);
  assert.equal(
    parseCoreConfig(["--max-connections-per-ip", "8"], {}).maxConnectionsPerIp,
    8,
  );
  assert.equal(
    parseCoreConfig([], { CHAT_MAX_CONNECTIONS_PER_IP: "16" })
      .maxConnectionsPerIp,
    16,
  );
  assert.throws(
    () => parseCoreConfig(["--max-connections-per-ip", "-1"], {}),
    (e) => e instanceof ConfigError && /max-connections-per-ip/.test(e.message),
  );
});
