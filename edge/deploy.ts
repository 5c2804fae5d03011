/**
 * The edge on Deno Deploy: a fetch-style entry (`export default { fetch }`)
 * that Deno Deploy (and `deno serve`) serves on the port it chooses.
 *
 * Configuration comes from the environment only (Deploy passes no flags):
 * UPSTREAM (required in practice: the core's public https:// or h2c
 * address), ALLOWED_ORIGINS, MAX_MESSAGE_BYTES, UPSTREAM_CLIENT,
 * UPSTREAM_KEEPALIVE_MS; HOST and PORT are ignored. A bad value fails the
 * deployment's start with the same message as the CLI. Like `main.ts`, this
 * is an entry point, so it is allowed to read `Deno.env`.
 *
 * Run it locally the way Deploy does:
 * `UPSTREAM=http://127.0.0.1:50051 deno serve --allow-net --allow-env edge/deploy.ts`
 *
 * @module
 */
import { createEdgeApp } from "./app.ts";
import { parseEdgeConfig } from "./config.ts";
import { createUpstream } from "./upstream/mod.ts";

const config = parseEdgeConfig([], Deno.env.toObject());
const app = createEdgeApp({
  config,
  upstream: createUpstream(config.upstreamClient, config.upstream, {
    maxMessageBytes: config.maxMessageBytes,
    keepaliveIntervalMs: config.upstreamKeepaliveMs,
  }),
});

export default { fetch: app.fetch } satisfies Deno.ServeDefaultExport;
