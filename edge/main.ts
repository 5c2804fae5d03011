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
import { EdgeConfigError, parseEdgeConfig } from "./config.ts";
import { createUpstreams } from "./upstream/mod.ts";

/** How long in-flight unary calls get to finish before streams are cut. */
const SHUTDOWN_GRACE_MS = 5000;

let config;
try {
  config = parseEdgeConfig(Deno.args, Deno.env.toObject());
} catch (err) {
  if (!(err instanceof EdgeConfigError)) throw err;
  console.error(`edge: ${err.message}`);
  Deno.exit(2);
}

const upstream = createUpstreams(config.upstreamClient, config.upstream, {
  maxMessageBytes: config.maxMessageBytes,
  keepaliveIntervalMs: config.upstreamKeepaliveMs,
});
const app = createEdgeApp({ upstream, config });
const server = Deno.serve({
  hostname: config.host,
  port: config.port,
  onListen: ({ hostname, port }) =>
    console.log(
      `edge: listening on http://${hostname}:${port}, upstream ${
        config.upstream.join(", ")
      } (${config.upstreamClient} client)`,
    ),
}, app.fetch);

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) Deno.exit(1);
  stopping = true;
  console.log(`edge: ${signal}, shutting down`);
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
  console.log("edge: stopped");
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  try {
    Deno.addSignalListener(signal, () => void stop(signal));
  } catch {
    // Deno Deploy manages the process lifecycle and offers no signals.
  }
}
