/**
 * The edge process: parse config, connect the upstream, serve, shut down
 * gracefully. The only file that reads Deno.args, Deno.env and signals.
 *
 * Runs on Deno Deploy as is: no filesystem access, only --allow-net and
 * --allow-env.
 *
 * @module
 */
import { createEdgeApp } from "./app.ts";
import { type EdgeConfig, EdgeConfigError, parseEdgeConfig } from "./config.ts";
import { LineBuffer } from "./ops/calls.ts";
import { createUpstreams } from "./upstream/mod.ts";
import { withTraceContext } from "./upstream/trace_context.ts";
import { edgeUsage } from "./usage.ts";

/** How long in-flight unary calls get to finish before streams are cut. */
const SHUTDOWN_GRACE_MS = 5000;

if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  console.log(edgeUsage());
  Deno.exit(0);
}
let config: Readonly<EdgeConfig>;
try {
  config = parseEdgeConfig(Deno.args, Deno.env.toObject());
} catch (err) {
  if (!(err instanceof EdgeConfigError)) throw err;
  console.error(`edge: ${err.message}`);
  Deno.exit(2);
}

// Per-call lines are joined into one write per 10 ms (edge/ops/calls.ts).
const callLines = new LineBuffer();

/** A lifecycle line, in the configured log format, after any call lines. */
function say(message: string): void {
  callLines.flush();
  console.log(
    config.logFormat === "json"
      ? JSON.stringify({
        time: new Date().toISOString(),
        level: "info",
        msg: message,
      })
      : `edge: ${message}`,
  );
}

// Files are read only when configured, so Deno Deploy needs no --allow-read.
const readPem = (path: string) =>
  path === "" ? undefined : Deno.readTextFileSync(path);
const tls = config.tlsCert === ""
  ? {}
  : { cert: readPem(config.tlsCert)!, key: readPem(config.tlsKey)! };
// With OTEL_DENO=true, calls carry the trace context to the core.
const upstream = withTraceContext(
  createUpstreams(config.upstreamClient, config.upstream, {
    maxMessageBytes: config.maxMessageBytes,
    keepaliveIntervalMs: config.upstreamKeepaliveMs,
    ca: readPem(config.upstreamCa),
  }),
);
const app = createEdgeApp({ upstream, config, writeLine: callLines.push });
if (config.devJwtSecret !== "") {
  say(
    "DEVELOPMENT token endpoint on: /auth/dev-token signs a token for any user",
  );
}
let server: Deno.HttpServer;
try {
  server = Deno.serve({
    hostname: config.host,
    port: config.port,
    ...tls,
    onListen: ({ hostname, port }) =>
      say(
        `listening on ${
          config.tlsCert ? "https" : "http"
        }://${hostname}:${port}, upstream ${
          config.upstream.join(", ")
        } (${config.upstreamClient} client), metrics at /metrics${
          config.metricsToken ? " (token required)" : ""
        }`,
      ),
  }, app.fetch);
} catch (err) {
  if (err instanceof Deno.errors.AddrInUse) {
    console.error(`edge: port ${config.port} is in use (--port)`);
  } else if (err instanceof Deno.errors.AddrNotAvailable) {
    console.error(`edge: cannot listen on ${config.host}:${config.port}`);
  } else throw err;
  await upstream.close();
  Deno.exit(2);
}

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) Deno.exit(1);
  stopping = true;
  say(`${signal}, shutting down`);
  const drained = server.shutdown();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    drained,
    new Promise((r) => timer = setTimeout(r, SHUTDOWN_GRACE_MS)),
  ]);
  clearTimeout(timer);
  // Long-lived streams never end by themselves: end them with UNAVAILABLE.
  await upstream.close();
  await drained;
  say("stopped");
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  try {
    Deno.addSignalListener(signal, () => void stop(signal));
  } catch {
    // Deno Deploy manages the process lifecycle and offers no signals.
  }
}
