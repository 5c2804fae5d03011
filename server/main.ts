/**
 * The core process: parse config, serve, shut down gracefully on signals.
 *
 * Run under the supervisor (`deno task serve:core`) in production; see the
 * README on the Deno http2 fault it guards against.
 */
import { ConfigError, parseCoreConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { startCoreServer } from "./server.ts";
import { StoreOpenError } from "./store/sqlite_store.ts";
import { BrokerUnavailableError } from "./broker/redis_broker.ts";

let config;
try {
  config = parseCoreConfig(Deno.args, Deno.env.toObject());
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`core: ${err.message}`);
  Deno.exit(2);
}
const log = createLogger(config.logLevel);
let core;
try {
  core = await startCoreServer({ ...config, logger: log });
} catch (err) {
  // An unreadable data file: never start over silently with empty history.
  if (err instanceof StoreOpenError) {
    console.error(`core: ${err.message}`);
    Deno.exit(2);
  }
  // Redis not reachable at start-up: exit, and the supervisor retries.
  if (err instanceof BrokerUnavailableError) {
    console.error(`core: ${err.message} (${config.broker})`);
    Deno.exit(1);
  }
  throw err;
}
log.info(
  `history: ${
    config.broker
      ? `redis broker ${config.broker}`
      : config.store === "sqlite"
      ? `sqlite in ${config.dataDir}`
      : config.store
  }, ${config.historySize} per room`,
);
log.info(
  `listening on ${config.host}:${core.port} (${
    config.tlsCert ? "TLS" : "h2c"
  })`,
);

let signalled = false;
const stop = async (signal: string) => {
  if (signalled) {
    log.info(`${signal} again: exiting now`);
    Deno.exit(1);
  }
  signalled = true;
  log.info(`${signal} received`);
  await core.shutdown();
  log.info("stopped");
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
