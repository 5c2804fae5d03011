/**
 * The core process: parse config, serve, shut down gracefully on signals.
 *
 * Run under the supervisor (`deno task serve:core`) in production; see the
 * README on the Deno http2 fault it guards against. Exit code 2 means the
 * core cannot start as configured (a bad flag or value, a port in use): the
 * supervisor does not restart it then.
 */
import { ConfigError, parseCoreConfig, redactUrl } from "./config.ts";
import { createLogger, grpcJsLogger, jsonLogLine } from "./log.ts";
import { setLogger } from "@grpc/grpc-js";
import { ListenError, startCoreServer } from "./server.ts";
import { coreUsage } from "./usage.ts";
import { StoreOpenError } from "./store/store_open_error.ts";
import { BrokerUnavailableError } from "./broker/broker_unavailable_error.ts";

if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  console.log(coreUsage());
  Deno.exit(0);
}
let config;
try {
  config = parseCoreConfig(Deno.args, Deno.env.toObject());
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`core: ${err.message}`);
  Deno.exit(2);
}
const log = createLogger(config.logLevel, "core", config.logFormat);
// grpc-js's own lines (mostly about a client's headers) in the core's
// format, rationed (server/log.ts).
const grpcJsLines = grpcJsLogger(log);
setLogger(grpcJsLines);
/** Why the core cannot start: one line, in the format asked for. */
const fatal = (message: string) =>
  console.error(
    config.logFormat === "json"
      ? jsonLogLine("error", "core", message)
      : `core: ${message}`,
  );
let core;
try {
  core = await startCoreServer({ ...config, logger: log });
} catch (err) {
  // Redis not reachable at start-up: exit, and the supervisor retries.
  if (err instanceof BrokerUnavailableError) {
    fatal(`${err.message} (${redactUrl(config.broker)})`);
    Deno.exit(1);
  }
  // A port taken, an unreadable data file or a file a setting names: never
  // start over silently with empty history.
  if (
    !(err instanceof ListenError) && !(err instanceof StoreOpenError) &&
    !(err instanceof ConfigError)
  ) {
    throw err;
  }
  fatal(err.message);
  Deno.exit(2);
}
log.info(
  `history: ${
    config.broker
      ? `redis broker ${redactUrl(config.broker)}`
      : config.store !== "memory"
      ? `${config.store} in ${config.dataDir}`
      : config.store
  }, ${config.historySize} per room`,
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
  grpcJsLines.close();
  log.info("stopped");
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
// A file-size limit (`ulimit -f`) reached by the history log: with a
// handler the write fails (EFBIG: publishes answer UNAVAILABLE, the store
// cuts the log back and tries again) instead of the signal ending the core.
Deno.addSignalListener("SIGXFSZ", () => {});
// Last: whoever waits for this line (the supervisor, tests) may signal at once.
log.notice(
  `listening on ${config.host}:${core.port} (${
    config.tlsCert ? "TLS" : "h2c"
  })`,
);
