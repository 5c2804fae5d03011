/**
 * `deno task serve`: the core (supervised) and the edge together, for local use.
 *
 * Starts the core first and the edge once the core listens (so that the
 * edge never proxies to whatever else holds that port), prefixes their
 * logs, prints the addresses once both listen, and stops both on Ctrl-C. If
 * either exits, the other is stopped too and its exit code is passed on
 * (2 for a bad flag or a port in use), so a broken start never looks like a
 * running system. Port 0 picks free ports; the banner shows the real ones.
 *
 * `--auth-dev` turns authentication on with a secret made up for this run:
 * the core requires tokens, the edge hands them out at /auth/dev-token.
 * Without it the core runs open, as it always did here.
 */
import { parseArgs } from "node:util";
import { parseNumberFlag } from "../../config/number_flag.ts";
import { prefixLines } from "./children.ts";

const USAGE = `Usage: deno task serve [flags]

Runs the core (under its supervisor, with --presence) and the edge with the
chat page, prints their addresses once both listen; Ctrl-C stops both.

  --host HOST            interface for both          (default 127.0.0.1)
  --core-port PORT       the core's gRPC port         (default 50051; 0 picks one)
  --port PORT            the edge's HTTP port         (default 8080; 0 picks one)
  --metrics-port PORT    the core's GET /metrics port (default 9464; 0 picks one; off)
  --auth-dev             require tokens, with a secret made up for this run
                         (the edge hands them out at /auth/dev-token?user=NAME)
  --help                 this text

The core and the edge have more settings: deno task serve:core --help,
deno task serve:edge --help (their environment variables apply here too).
Exit codes: 0 stopped by Ctrl-C, 2 bad flag or port in use, else the code of
whichever stopped first.`;

function fail(message: string): never {
  console.error(`serve: ${message}`);
  Deno.exit(2);
}

function port(flag: string, raw: string, offOk = false): string {
  if (offOk && raw === "off") return raw;
  try {
    return String(parseNumberFlag(`--${flag}`, raw, { min: 0, max: 65535 }));
  } catch (err) {
    fail((err as Error).message);
  }
}

let values;
try {
  ({ values } = parseArgs({
    args: Deno.args,
    options: {
      "core-port": { type: "string", default: "50051" },
      port: { type: "string", default: "8080" },
      host: { type: "string", default: "127.0.0.1" },
      "metrics-port": { type: "string", default: "9464" },
      "auth-dev": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  fail(`${(err as Error).message} (see --help)`);
}
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const host = values.host;
if (host.trim() === "") fail("--host must not be empty");
const corePort = port("core-port", values["core-port"]);
const edgePort = port("port", values.port);
const metricsPort = port("metrics-port", values["metrics-port"], true);
const here = (path: string) => new URL(path, import.meta.url).pathname;
// Passed in the environment, not argv, so it does not show in `ps`.
const devSecret = values["auth-dev"]
  ? btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
  : undefined;

interface Child {
  name: string;
  proc: Deno.ChildProcess;
  /** Resolves with the first match of `ready` in its stdout. */
  ready: Promise<RegExpMatchArray>;
  /** Resolves with the first match of `pattern` in its stdout, if any. */
  seen(pattern: RegExp): RegExpMatchArray | undefined;
}

function start(
  name: string,
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Child {
  const proc = new Deno.Command(Deno.execPath(), {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // Own process group: a terminal's Ctrl-C reaches only this process,
    // which then stops each child exactly once.
    detached: true,
  }).spawn();
  const lines: string[] = [];
  let onReady: (m: RegExpMatchArray) => void;
  const readyP = new Promise<RegExpMatchArray>((r) => onReady = r);
  prefixLines(proc.stdout, `[${name}] `, Deno.stdout, (line) => {
    lines.push(line);
    const m = line.match(ready);
    if (m) onReady(m);
  });
  prefixLines(proc.stderr, `[${name}] `, Deno.stderr);
  return {
    name,
    proc,
    ready: readyP,
    seen: (pattern) =>
      lines.map((l) => l.match(pattern)).find((m) => m !== null) ??
        undefined,
  };
}

const children: Child[] = [];
let stopping = false;
const stopAll = () => {
  for (const child of children) {
    try {
      child.proc.kill("SIGTERM");
    } catch { /* already gone */ }
  }
};
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    stopping = true;
    stopAll();
  });
}

/** Resolves with the first child to exit. */
const exited = (child: Child) =>
  child.proc.status.then((status) => ({ child, status }));

const core = start(
  "core",
  [
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-run",
    here("../../supervisor/main.ts"),
    "--host",
    host,
    "--port",
    corePort,
    "--metrics-port",
    metricsPort,
    "--presence",
  ],
  devSecret ? { CHAT_JWT_SECRET: devSecret } : {},
  /listening on \S+:(\d+)/,
);
children.push(core);

const first = await Promise.race([
  core.ready.then((m) => ({ ready: m })),
  exited(core),
]);
let result: { child: Child; status: Deno.CommandStatus };
if ("ready" in first) {
  const coreAt = `${host}:${first.ready[1]}`;
  const edge = start(
    "edge",
    [
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
      `http://${coreAt}`,
    ],
    devSecret ? { EDGE_DEV_JWT_SECRET: devSecret } : {},
    /listening on (https?:\/\/\S+?:\d+)/,
  );
  children.push(edge);
  void edge.ready.then((m) => {
    if (stopping) return;
    const metrics = core.seen(/metrics on (http:\/\/\S+)/)?.[1];
    console.log(
      [
        "",
        `  core (gRPC, h2c):        ${coreAt}`,
        `  edge (gRPC-Web/Connect): ${m[1]}`,
        `  chat page:               ${m[1]}/`,
        ...(metrics ? [`  metrics (Prometheus):    ${metrics}`] : []),
        devSecret
          ? "  auth:                    on, development secret (tokens: /auth/dev-token?user=NAME)"
          : "  auth:                    off (--auth-dev turns it on)",
        "  Ctrl-C stops both.",
        "",
      ].join("\n"),
    );
  });
  result = await Promise.race([exited(core), exited(edge)]);
} else {
  result = first;
}

if (!stopping) {
  console.error(
    `serve: ${result.child.name} exited (code ${result.status.code}); stopping`,
  );
}
stopAll();
await Promise.all(children.map((c) => c.proc.status));
Deno.exit(
  stopping && result.status.success ? 0 : result.status.code || 1,
);
