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
 * `--cores N` starts N cores (on consecutive ports from `--core-port`), all
 * on one broker (`--broker redis://...`, or a local redis-server started here
 * when there is none, and started again if it dies), behind one edge that
 * balances over them.
 *
 * `--auth-dev` turns authentication on with a secret made up for this run:
 * the core requires tokens, the edge hands them out at /auth/dev-token.
 * Without it the core runs open, as it always did here.
 */
import { parseArgs } from "node:util";
import { argsErrorLine } from "../../config/args_error.ts";
import { joinNegativeValues } from "../../config/negative_values.ts";
import { parseNumberFlag } from "../../config/number_flag.ts";
import { tagLines } from "./children.ts";
import { redactUrl } from "../../server/config.ts";
import { jsonLogLine } from "../../server/log.ts";
import {
  type RedisServer,
  redisServerInstalled,
  startRedisServer,
} from "./redis.ts";

const USAGE = `Usage: deno task serve [flags]

Runs the core (under its supervisor, with --presence) and the edge with the
chat page, prints their addresses once both listen; Ctrl-C stops both.

  --host HOST            interface for both          (default 127.0.0.1)
  --core-port PORT       the core's gRPC port         (default 50051; 0 picks one)
  --port PORT            the edge's HTTP port         (default 8080; 0 picks one)
  --metrics-port PORT    the core's GET /metrics port (default 9464; 0 picks one; off)
  --cores N              N cores sharing rooms through Redis, behind one
                         balancing edge (default 1; ports from --core-port on)
  --broker URL           the cores' Redis (redis[s]://[:pw@]host:port[/db]); with
                         --cores above 1 and none, serve starts redis-server
  --edge-procs N         N edge processes on the edge's port (reusePort,
                         Linux; default 1)
  --auth-dev             require tokens, with a secret made up for this run
                         (the edge hands them out at /auth/dev-token?user=NAME)
  --log-format text|json every line as text behind its process's name, or as
                         one JSON object with a "process" field (default
                         $LOG_FORMAT, else text); passed on to the core and edge
  --help                 this text

The core and the edge have more settings: deno task serve:core --help,
deno task serve:edge --help (their environment variables apply here too).
Exit codes: 0 stopped by Ctrl-C, 2 bad flag or port in use, else the code of
whichever stopped first.`;

/** `$LOG_FORMAT`, which `--log-format` overrides. */
const envLogFormat = Deno.env.get("LOG_FORMAT");
/** Whether lines are JSON (`--log-format json`); set once flags are read. */
let json = envLogFormat === "json";

/** One line of serve's own, as text or as a JSON object. */
function say(level: "info" | "error", message: string, fields = {}): string {
  return json
    ? jsonLogLine(level, "serve", message, undefined, fields)
    : `serve: ${message}`;
}

function fail(message: string): never {
  console.error(say("error", message));
  Deno.exit(2);
}

function port(flag: string, raw: string, offOk = false): string {
  if (offOk && raw === "off") return raw;
  try {
    return String(parseNumberFlag(`--${flag}`, raw, { min: 0, max: 65535 }));
  } catch (err) {
    // "off" is a value too: said in the core's words.
    fail(
      offOk
        ? `--${flag} must be an integer from 0 to 65535 or "off", got "${raw}"`
        : (err as Error).message,
    );
  }
}

const options = {
  "core-port": { type: "string", default: "50051" },
  port: { type: "string", default: "8080" },
  host: { type: "string", default: "127.0.0.1" },
  "metrics-port": { type: "string", default: "9464" },
  "auth-dev": { type: "boolean", default: false },
  "log-format": { type: "string" },
  cores: { type: "string", default: "1" },
  "edge-procs": { type: "string", default: "1" },
  broker: { type: "string", default: "" },
  help: { type: "boolean", short: "h" },
} as const;
let values;
try {
  ({ values } = parseArgs({
    args: joinNegativeValues(Deno.args, options),
    options,
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  fail(`${argsErrorLine(err)} (see --help)`);
}
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const logFormat = values["log-format"] ?? envLogFormat ?? "text";
if (logFormat !== "text" && logFormat !== "json") {
  // Name where the value came from, as the core and the edge do.
  const name = values["log-format"] !== undefined
    ? "--log-format"
    : "LOG_FORMAT";
  fail(`${name} must be text or json, got ${JSON.stringify(logFormat)}`);
}
json = logFormat === "json";
/** What every child gets in its environment besides serve's own. */
const childEnv = { LOG_FORMAT: logFormat };
const host = values.host;
if (host.trim() === "") fail("--host must not be empty");
const corePort = port("core-port", values["core-port"]);
const edgePort = port("port", values.port);
const metricsPort = port("metrics-port", values["metrics-port"], true);
let cores = 1;
try {
  cores = parseNumberFlag("--cores", values.cores, { min: 1, max: 64 });
} catch (err) {
  fail((err as Error).message);
}
// Core i listens on --core-port + i (and its metrics on --metrics-port + i):
// the last of them must be a port too, before anything is started.
for (
  const [flag, base] of [["core-port", corePort], ["metrics-port", metricsPort]]
) {
  if (base !== "0" && base !== "off" && Number(base) + cores - 1 > 65535) {
    fail(
      `--${flag} ${base} leaves no room for ${cores} cores on consecutive ports (the last would be ${
        Number(base) + cores - 1
      }; at most 65535)`,
    );
  }
}
let edgeProcs = 1;
try {
  edgeProcs = parseNumberFlag("--edge-procs", values["edge-procs"], {
    min: 1,
    max: 64,
  });
} catch (err) {
  fail((err as Error).message);
}
/** Core i's port: consecutive from --core-port, or each its own with 0. */
const portOf = (base: string, i: number) =>
  base === "0" || base === "off" ? base : String(Number(base) + i);
const here = (path: string) => new URL(path, import.meta.url).pathname;
// Passed in the environment, not argv, so it does not show in `ps`.
const devSecret = values["auth-dev"]
  ? btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
  : undefined;

/**
 * How a child's line is passed on: as text behind `[name] `; as JSON, the
 * child's JSON object with `"process": name` added, or a line that is not
 * one (a runtime's panic, say) wrapped in one at `level`.
 */
function tagLine(name: string, level: "info" | "error") {
  if (!json) return (line: string) => `[${name}] ${line}`;
  return (line: string) => {
    if (line.startsWith("{")) {
      try {
        const record = JSON.parse(line);
        if (record !== null && typeof record === "object") {
          return JSON.stringify({ ...record, process: name });
        }
      } catch {
        // Not JSON after all: wrapped below.
      }
    }
    return jsonLogLine(level, name, line, undefined, { process: name });
  };
}

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
    env: { ...childEnv, ...env },
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
  tagLines(proc.stdout, tagLine(name, "info"), Deno.stdout, (line) => {
    lines.push(line);
    const m = line.match(ready);
    if (m) onReady(m);
  });
  tagLines(proc.stderr, tagLine(name, "error"), Deno.stderr);
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
// Each child is told once: a second SIGTERM makes the core exit at once
// ("SIGTERM again"), cutting its graceful shutdown (and the history store's
// close) short.
const told = new Set<Child>();
const stopAll = () => {
  for (const child of children) {
    if (told.has(child)) continue;
    told.add(child);
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

let redis: RedisServer | undefined;
let broker = values.broker;
if (cores > 1 && broker === "") {
  if (!(await redisServerInstalled())) {
    fail(
      "--cores above 1 needs a broker: pass --broker redis://host:port, or " +
        "install redis-server (sudo apt-get install -y redis-server, or " +
        "deno task setup as root) and serve starts one",
    );
  }
  redis = await startRedisServer();
  broker = redis.url;
  console.log(
    say("info", `started redis-server on ${broker} (no persistence)`),
  );
}

/**
 * serve's own redis-server is started again on its port when it dies, as
 * the supervisor does a core: without it every core would stay degraded
 * (publishes UNAVAILABLE) until Ctrl-C. The cores reconnect by themselves;
 * with no persistence every room goes on in a new epoch.
 */
let redisWanted = redis !== undefined;
const redisKept = (async () => {
  while (redis) {
    const status = await redis.exited;
    if (!redisWanted) return;
    console.error(say(
      "error",
      `redis-server exited (${
        status.signal ?? `code ${status.code}`
      }); starting it again on port ${redis.port}`,
    ));
    await new Promise((r) => setTimeout(r, 500));
    try {
      redis = await startRedisServer({ port: redis.port });
    } catch (e) {
      console.error(say("error", (e as Error).message));
      continue;
    }
    if (!redisWanted) await redis.stop();
  }
})();

const coreProcs = Array.from({ length: cores }, (_, i) => {
  const name = cores > 1 ? `core-${i + 1}` : "core";
  const child = start(
    name,
    [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-run",
      here("../../supervisor/main.ts"),
      "--host",
      host,
      "--port",
      portOf(corePort, i),
      "--metrics-port",
      portOf(metricsPort, i),
      "--presence",
      ...(cores > 1 ? ["--instance-id", name] : []),
      ...(broker ? ["--broker", broker] : []),
    ],
    devSecret ? { CHAT_JWT_SECRET: devSecret } : {},
    /listening on \S+:(\d+)/,
  );
  children.push(child);
  return child;
});

const first = await Promise.race([
  Promise.all(coreProcs.map((c) => c.ready)).then((ms) => ({ ready: ms })),
  ...coreProcs.map(exited),
]);
let result: { child: Child; status: Deno.CommandStatus };
if ("ready" in first) {
  const coreAt = first.ready.map((m) => `${host}:${m[1]}`);
  const edge = start(
    "edge",
    [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      ...(edgeProcs > 1 ? ["--allow-run"] : []),
      here("../../edge/main.ts"),
      "--host",
      host,
      "--port",
      edgePort,
      ...(edgeProcs > 1 ? ["--procs", String(edgeProcs)] : []),
      "--upstream",
      coreAt.map((at) => `http://${at}`).join(","),
    ],
    devSecret ? { EDGE_DEV_JWT_SECRET: devSecret } : {},
    /listening on (https?:\/\/\S+?:\d+)/,
  );
  children.push(edge);
  void edge.ready.then((m) => {
    if (stopping) return;
    const metrics = coreProcs.map((c) =>
      c.seen(/metrics on (http:\/\/[^\s"]+)/)?.[1]
    );
    const row = (label: string, value: string) =>
      `  ${label.padEnd(25)}${value}`;
    const nth = (i: number) => cores > 1 ? ` ${i + 1}` : "";
    const auth = devSecret
      ? "on, development secret (tokens: /auth/dev-token?user=NAME)"
      : "off (--auth-dev turns it on)";
    if (json) {
      // The banner as one object, so that a collector still reads JSON.
      console.log(say("info", "ready", {
        cores: coreAt,
        ...(broker ? { broker: redactUrl(broker) } : {}),
        edge: m[1],
        page: `${m[1]}/`,
        metrics: metrics.filter((url) => url !== undefined),
        auth,
      }));
      return;
    }
    console.log(
      [
        "",
        ...coreAt.map((at, i) => row(`core${nth(i)} (gRPC, h2c):`, at)),
        ...(broker ? [row("broker:", redactUrl(broker))] : []),
        row("edge (gRPC-Web/Connect):", m[1]),
        row("chat page:", `${m[1]}/`),
        ...metrics.flatMap((url, i) =>
          url ? [row(`metrics${nth(i)} (Prometheus):`, url)] : []
        ),
        row("auth:", auth),
        cores > 1 ? "  Ctrl-C stops them all." : "  Ctrl-C stops both.",
        "",
      ].join("\n"),
    );
  });
  result = await Promise.race([...coreProcs.map(exited), exited(edge)]);
} else {
  result = first;
}

if (!stopping) {
  console.error(
    say(
      "error",
      `${result.child.name} exited (code ${result.status.code}); stopping`,
    ),
  );
}
stopAll();
await Promise.all(children.map((c) => c.proc.status));
redisWanted = false;
await redis?.stop();
await redisKept;
Deno.exit(
  stopping && result.status.success ? 0 : result.status.code || 1,
);
