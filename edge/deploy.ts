/**
 * The edge on Deno Deploy: a fetch-style entry (`export default { fetch }`)
 * that Deno Deploy (and `deno serve`) serves on the port it chooses.
 *
 * Configuration comes from the environment only (Deploy passes no flags):
 * UPSTREAM (the core's public https:// or h2c address) and the other
 * variables of the README's edge table; HOST, PORT, TLS_CERT and TLS_KEY are
 * ignored (Deploy listens and terminates TLS itself). A bad value fails the
 * deployment's start with the same message as the CLI. Per-call log lines go
 * to stdout in LOG_FORMAT, batched as in `main.ts`. Like `main.ts`, this is
 * an entry point, so it is allowed to read `Deno.env`.
 *
 * Run it locally the way Deploy does:
 * `UPSTREAM=http://127.0.0.1:50051 deno serve --allow-net --allow-env edge/deploy.ts`
 *
 * @module
 */
import { createEdgeApp } from "./app.ts";
import { parseEdgeConfig } from "./config.ts";
import { LineBuffer } from "./ops/calls.ts";
import { createUpstreams } from "./upstream/mod.ts";
import { withTraceContext } from "./upstream/trace_context.ts";

const config = parseEdgeConfig([], Deno.env.toObject());
const app = createEdgeApp({
  config,
  upstream: withTraceContext(
    createUpstreams(config.upstreamClient, config.upstream, {
      maxMessageBytes: config.maxMessageBytes,
      keepaliveIntervalMs: config.upstreamKeepaliveMs,
      stallMs: config.upstreamStallMs,
      // Read only when set: without it Deploy needs no file access.
      ca: config.upstreamCa === ""
        ? undefined
        : Deno.readTextFileSync(config.upstreamCa),
    }),
  ),
  writeLine: new LineBuffer().push,
});

export default { fetch: app.fetch } satisfies Deno.ServeDefaultExport;
