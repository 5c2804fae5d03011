import assert from "node:assert/strict";
import { ConfigError, DEFAULT_CORE_CONFIG, parseCoreConfig } from "./config.ts";

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
  ];
  for (const [args, env, message] of bad) {
    assert.throws(() => parseCoreConfig(args, env), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, message);
      return true;
    });
  }
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
  });
  assert.equal(config.jwtSecret, secret);
  assert.equal(config.jwtPublicKey, "key.pem");
  assert.equal(config.jwtIssuer, "iss");
  assert.equal(config.jwtAudience, "aud");
  assert.equal(config.rateLimit, 5);
  assert.equal(config.rateBurst, 10);
  assert.equal(config.maxSubscriptions, 3);
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
    () => parseCoreConfig(["--jwt-issuer", "x"], {}),
    /need --jwt-secret or --jwt-public-key/,
  );
  assert.throws(
    () => parseCoreConfig(["--rate-burst", "3"], {}),
    /--rate-burst needs --rate-limit/,
  );
});
