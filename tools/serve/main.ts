/**
 * `deno task serve`: the cores (supervised) and the edge together, for local
 * use.
 *
 * Starts them as child processes, prefixes their logs, prints the addresses
 * once the edge reports its upstream healthy, and stops everything on
 * Ctrl-C. If any exits, the others are stopped too and the exit code is
 * passed on, so a broken start never looks like a running system.
 *
 * `--cores N` starts N cores on consecutive ports from `--core-port`, all on
 * one broker (`--broker redis://...`, or a local redis-server started here
 * when there is none), behind one edge that balances over them.
 *
 * `--auth-dev` turns authentication on with a secret made up for this run:
 * the core requires tokens, the edge hands them out at /auth/dev-token.
 * Without it the core runs open, as it always did here.
 */
import { parseArgs } from "node:util";
import { prefixLines, waitHealthy } from "./children.ts";
import {
  type RedisServer,
  redisServerInstalled,
  startRedisServer,
} from "./redis.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "core-port": { type: "string", default: "50051" },
    port: { type: "string", default: "8080" },
    host: { type: "string", default: "127.0.0.1" },
    cores: { type: "string", default: "1" },
    broker: { type: "string" },
    "auth-dev": { type: "boolean", default: false },
  },
});
// Passed in the environment, not argv, so it does not show in `ps`.
const devSecret = values["auth-dev"]
  ? btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
  : undefined;
const corePort = Number(values["core-port"]);
const edgePort = values.port;
const host = values.host;
const cores = Number(values.cores);
if (!Number.isInteger(cores) || cores < 1 || cores > 64) {
  console.error(
    `serve: --cores must be an integer from 1 to 64, got ${values.cores}`,
  );
  Deno.exit(2);
}
const here = (path: string) => new URL(path, import.meta.url).pathname;

let redis: RedisServer | undefined;
let broker = values.broker ?? "";
if (cores > 1 && broker === "") {
  if (!(await redisServerInstalled())) {
    console.error(
      "serve: --cores above 1 needs a broker: pass --broker redis://host:port, " +
        "or install redis-server (sudo apt-get install -y redis-server, or " +
        "deno task setup as root) and serve starts one",
    );
    Deno.exit(2);
  }
  redis = await startRedisServer();
  broker = redis.url;
  console.log(`serve: started redis-server on ${broker} (no persistence)`);
}

function start(
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Deno.ChildProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  prefixLines(child.stdout, `[${name}] `, Deno.stdout);
  prefixLines(child.stderr, `[${name}] `, Deno.stderr);
  return child;
}

const corePorts = Array.from({ length: cores }, (_, i) => corePort + i);
const coreProcs = corePorts.map((port, i) =>
  start(cores > 1 ? `core-${i + 1}` : "core", [
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-run",
    "--allow-read",
    "--allow-sys",
    here("../../supervisor/main.ts"),
    "--host",
    host,
    "--port",
    String(port),
    "--presence",
    "--instance-id",
    cores > 1 ? `core-${i + 1}` : "core",
    ...(broker ? ["--broker", broker] : []),
  ], devSecret ? { CHAT_JWT_SECRET: devSecret } : {})
);
const edge = start("edge", [
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  here("../../edge/main.ts"),
  "--host",
  host,
  "--port",
  edgePort,
  "--upstream",
  corePorts.map((p) => `http://${host}:${p}`).join(","),
], devSecret ? { EDGE_DEV_JWT_SECRET: devSecret } : {});
const children = [...coreProcs, edge];

let stopping = false;
const stopAll = (signal: Deno.Signal = "SIGTERM") => {
  stopping = true;
  for (const child of children) {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  }
};
Deno.addSignalListener("SIGINT", () => stopAll("SIGTERM"));
Deno.addSignalListener("SIGTERM", () => stopAll("SIGTERM"));

const row = (label: string, value: string) => `  ${label.padEnd(25)}${value}`;

waitHealthy(`http://${host}:${edgePort}/healthz`, 30_000).then((ok) => {
  if (stopping) return;
  if (!ok) {
    console.error("serve: the edge did not report a healthy core within 30 s");
    return;
  }
  console.log(
    [
      "",
      ...corePorts.map((p, i) =>
        row(`core${cores > 1 ? ` ${i + 1}` : ""} (gRPC, h2c):`, `${host}:${p}`)
      ),
      ...(broker ? [row("broker:", broker)] : []),
      row("edge (gRPC-Web/Connect):", `http://${host}:${edgePort}`),
      row("chat page:", `http://${host}:${edgePort}/`),
      row(
        "auth:",
        devSecret
          ? "on, development secret (tokens: /auth/dev-token?user=NAME)"
          : "off (--auth-dev turns it on)",
      ),
      "  Ctrl-C stops them all.",
      "",
    ].join("\n"),
  );
});

const first = await Promise.race([
  ...coreProcs.map((c, i) =>
    c.status.then((s) => ({ name: cores > 1 ? `core-${i + 1}` : "core", s }))
  ),
  edge.status.then((s) => ({ name: "edge", s })),
]);
if (!stopping) {
  console.error(`serve: ${first.name} exited (code ${first.s.code}); stopping`);
}
stopAll();
await Promise.all(children.map((c) => c.status));
await redis?.stop();
Deno.exit(stopping && first.s.success ? 0 : first.s.code || 1);
