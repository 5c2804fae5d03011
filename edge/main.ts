/**
 * The edge process: parse config, connect the upstream, serve, shut down
 * gracefully. The only file that reads Deno.args, Deno.env and signals.
 *
 * Runs on Deno Deploy as is: no filesystem access, only --allow-net and
 * --allow-env.
 *
 * With `--procs N` (N > 1) this process serves nothing itself: it starts N
 * children, each this file with the same flags and `CHAT_EDGE_CHILD` set,
 * all listening on one port with `reusePort`, and supervises them
 * (edge/process_group.ts). That needs --allow-run, and --unstable-net for
 * the children, which it passes on.
 *
 * @module
 */
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { createCallObserver, createEdgeApp } from "./app.ts";
import {
  EDGE_SETTINGS,
  type EdgeConfig,
  EdgeConfigError,
  parseEdgeConfig,
} from "./config.ts";
import { LineBuffer } from "./ops/calls.ts";
import { tlsPairError } from "../net/tls_pair_error.ts";
import { listenFailure } from "../net/listen_error.ts";
import { createUpstreams } from "./upstream/mod.ts";
import { withTraceContext } from "./upstream/trace_context.ts";
import { edgeUsage } from "./usage.ts";
import { startProcessGroup } from "./process_group.ts";
import { EdgeShutdown } from "./shutdown.ts";
import {
  type ResilientServer,
  serveResilient,
} from "../net/resilient_serve.ts";

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

// Set by a --procs parent for its children (edge/process_group.ts).
const childIndex = Deno.env.get("CHAT_EDGE_CHILD");
if (config.procs > 1 && childIndex === undefined) {
  await superviseChildren(config);
}

/** The parent of `--procs N`: runs the children until stopped; exits. */
async function superviseChildren(config: Readonly<EdgeConfig>): Promise<never> {
  if (Deno.permissions.querySync({ name: "run" }).state !== "granted") {
    console.error(
      "edge: --procs above 1 needs --allow-run (deno task serve:edge has it)",
    );
    Deno.exit(2);
  }
  const log = (line: string) => console.error(`edge: ${line}`);
  // A compiled edge (deno compile) runs itself; deno runs this file.
  const compiled = !/^deno(\.exe)?$/.test(basename(Deno.execPath()));
  const group = startProcessGroup({
    procs: config.procs,
    host: config.host,
    port: config.port,
    command: (port) => ({
      cmd: Deno.execPath(),
      args: [
        ...(compiled ? [] : [
          "run",
          "--allow-net",
          "--allow-env",
          "--allow-read",
          "--unstable-net",
          fileURLToPath(import.meta.url),
        ]),
        ...Deno.args,
        "--port",
        String(port),
      ],
    }),
    env: (i) => ({
      CHAT_EDGE_CHILD: String(i),
      CHAT_EDGE_SUPERVISOR: String(Deno.pid),
    }),
    log,
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      log(`${signal}, stopping ${config.procs} processes`);
      void group.stop(signal);
    });
  }
  void group.ready.then(() =>
    log(
      `${config.procs} processes listening on port ${group.port} (pids ${
        group.pids().join(", ")
      })`,
    )
  );
  const exit = await group.done;
  Deno.exit(exit.code);
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
        component: "edge",
        msg: message,
      })
      : `edge: ${message}`,
  );
}

/** `--flag (ENV) path` of a file setting, as errors name it. */
const fileSetting = (key: "tlsCert" | "tlsKey" | "upstreamCa") =>
  `--${EDGE_SETTINGS[key].flag} (${EDGE_SETTINGS[key].env}) ${config[key]}`;

// Files are read only when configured, so Deno Deploy needs no --allow-read.
const readPem = (key: "tlsCert" | "tlsKey" | "upstreamCa") => {
  if (config[key] === "") return undefined;
  try {
    return Deno.readTextFileSync(config[key]);
  } catch (err) {
    console.error(
      `edge: cannot read ${fileSetting(key)}: ${(err as Error).message}`,
    );
    Deno.exit(2);
  }
};
const tls = config.tlsCert === ""
  ? {}
  : { cert: readPem("tlsCert")!, key: readPem("tlsKey")! };
// With OTEL_DENO=true, calls carry the trace context to the core.
const upstream = withTraceContext(
  createUpstreams(config.upstreamClient, config.upstream, {
    maxMessageBytes: config.maxMessageBytes,
    keepaliveIntervalMs: config.upstreamKeepaliveMs,
    stallMs: config.upstreamStallMs,
    ca: readPem("upstreamCa"),
  }),
);
const calls = createCallObserver(upstream, config, undefined, callLines.push);
// Run first when stopping: Deno.serve's shutdown closes WebSockets at once.
const shutdown = new EdgeShutdown();
const app = createEdgeApp({ upstream, config, calls, shutdown });
if (config.devJwtSecret !== "") {
  say(
    "DEVELOPMENT token endpoint on: /auth/dev-token signs a token for any user",
  );
}
let server: ResilientServer;
try {
  server = serveResilient(
    {
      hostname: config.host,
      port: config.port,
      // One of several processes on this port (--procs): the kernel spreads
      // connections over them.
      reusePort: childIndex !== undefined,
      ...tls,
      onListen: ({ hostname, port }) =>
        say(
          `listening on ${
            config.tlsCert ? "https" : "http"
          }://${hostname}:${port}, upstream ${
            config.upstream.join(", ")
          } (${config.upstreamClient} client), metrics at /metrics${
            config.metricsToken ? " (token required)" : ""
          }${
            childIndex === undefined
              ? ""
              : `, process ${childIndex} of ${config.procs} (pid ${Deno.pid})`
          }`,
        ),
    },
    app.fetch,
    (err, ms) =>
      say(
        `not listening (${
          (err as Error).message
        }); listening again in ${ms} ms`,
      ),
  );
} catch (err) {
  const pairError = config.tlsCert === "" ? undefined : tlsPairError(err);
  const bindError = listenFailure(err, config.host, config.port, "--port");
  if (bindError !== undefined) {
    console.error(`edge: ${bindError}`);
  } else if (pairError !== undefined) {
    // Not PEM, or not a pair: Deno.serve's words, with both files named.
    console.error(
      `edge: ${fileSetting("tlsCert")} and ${
        fileSetting("tlsKey")
      } are not a certificate and its key: ${pairError}`,
    );
  } else throw err;
  await upstream.close();
  Deno.exit(2);
}

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) Deno.exit(1);
  stopping = true;
  say(`${signal}, shutting down`);
  // One grace for both: the requests in flight carry on meanwhile.
  const graceEnds = performance.now() + SHUTDOWN_GRACE_MS;
  // WebSocket bridge calls get their status frame before their socket goes;
  // unary ones the core has, their answer (within the grace).
  await shutdown.stop(SHUTDOWN_GRACE_MS);
  const drained = server.shutdown();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    drained,
    new Promise((r) =>
      timer = setTimeout(r, Math.max(0, graceEnds - performance.now()))
    ),
  ]);
  clearTimeout(timer);
  // Long-lived streams never end by themselves: end them with UNAVAILABLE.
  await upstream.close();
  await drained;
  calls.close();
  say("stopped");
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  try {
    Deno.addSignalListener(signal, () => void stop(signal));
  } catch {
    // Deno Deploy manages the process lifecycle and offers no signals.
  }
}

// A child of --procs whose supervisor died (SIGKILL, a crash) would hold the
// port forever: it stops once it has been handed to another parent. The
// supervisor's pid comes with the environment, so a supervisor that died
// before this line ran is noticed too; and a drain that hangs (a client that
// never lets go) cannot keep an orphan alive: it exits after the grace.
if (childIndex !== undefined) {
  const parent = Number(Deno.env.get("CHAT_EDGE_SUPERVISOR")) || Deno.ppid;
  const watch = setInterval(() => {
    if (Deno.ppid === parent) return;
    clearInterval(watch);
    const last = setTimeout(() => Deno.exit(1), 2 * SHUTDOWN_GRACE_MS);
    Deno.unrefTimer(last);
    void stop("supervisor gone").then(() => Deno.exit(0));
  }, 1000);
  Deno.unrefTimer(watch);
}
