/**
 * `deno task serve`: the core (supervised) and the edge together, for local use.
 *
 * Starts both as child processes, prefixes their logs, prints both
 * addresses once the edge reports its upstream healthy, and stops both on
 * Ctrl-C. If either exits, the other is stopped too and the exit code is
 * passed on, so a broken start never looks like a running system.
 *
 * `--auth-dev` turns authentication on with a secret made up for this run:
 * the core requires tokens, the edge hands them out at /auth/dev-token.
 * Without it the core runs open, as it always did here.
 */
import { parseArgs } from "node:util";
import { prefixLines, waitHealthy } from "./children.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "core-port": { type: "string", default: "50051" },
    port: { type: "string", default: "8080" },
    host: { type: "string", default: "127.0.0.1" },
    "auth-dev": { type: "boolean", default: false },
  },
});
// Passed in the environment, not argv, so it does not show in `ps`.
const devSecret = values["auth-dev"]
  ? btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
  : undefined;
const corePort = values["core-port"];
const edgePort = values.port;
const host = values.host;
const here = (path: string) => new URL(path, import.meta.url).pathname;

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

const core = start("core", [
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
  corePort,
  "--presence",
], devSecret ? { CHAT_JWT_SECRET: devSecret } : {});
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
  `http://${host}:${corePort}`,
], devSecret ? { EDGE_DEV_JWT_SECRET: devSecret } : {});

let stopping = false;
const stopAll = (signal: Deno.Signal = "SIGTERM") => {
  stopping = true;
  for (const child of [core, edge]) {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  }
};
Deno.addSignalListener("SIGINT", () => stopAll("SIGTERM"));
Deno.addSignalListener("SIGTERM", () => stopAll("SIGTERM"));

waitHealthy(`http://${host}:${edgePort}/healthz`, 30_000).then((ok) => {
  if (stopping) return;
  if (!ok) {
    console.error("serve: the edge did not report a healthy core within 30 s");
    return;
  }
  console.log(
    [
      "",
      `  core (gRPC, h2c):        ${host}:${corePort}`,
      `  edge (gRPC-Web/Connect): http://${host}:${edgePort}`,
      `  chat page:               http://${host}:${edgePort}/`,
      devSecret
        ? "  auth:                    on, development secret (tokens: /auth/dev-token?user=NAME)"
        : "  auth:                    off (--auth-dev turns it on)",
      "  Ctrl-C stops both.",
      "",
    ].join("\n"),
  );
});

const first = await Promise.race([
  core.status.then((s) => ({ name: "core", s })),
  edge.status.then((s) => ({ name: "edge", s })),
]);
if (!stopping) {
  console.error(`serve: ${first.name} exited (code ${first.s.code}); stopping`);
}
stopAll();
await Promise.all([core.status, edge.status]);
Deno.exit(stopping && first.s.success ? 0 : first.s.code || 1);
