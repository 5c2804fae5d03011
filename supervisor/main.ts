/**
 * Entry of `deno task serve:core`: runs the core under the supervisor.
 *
 * Every argument passes through to the core (`deno task serve:core --port
 * 6000`). The core gets only the permissions it uses (net, env, sys=uid,
 * reading node_modules, its key files and the history store's worker
 * module, and writing in its data directory: permissions.ts); this process
 * needs --allow-run to spawn it and --allow-env for the settings below.
 *
 * Environment: SUPERVISOR_CHILD (script to run, relative to the project
 * root; default server/main.ts), SUPERVISOR_BASE_DELAY_MS (first restart
 * delay, default 100), SUPERVISOR_MAX_DELAY_MS (backoff cap, default 5000),
 * SUPERVISOR_GIVE_UP_AFTER (deaths before ready in a row, default 10).
 *
 * With the core as the child, `--help` and the flags are checked here
 * first, so that a bad flag is one line and exit 2 before anything starts;
 * a core that exits 2 anyway (port in use) is not restarted.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { type LogLevel, superviseChild } from "./supervisor.ts";
import {
  ConfigError,
  CORE_SETTINGS,
  type CoreConfig,
  parseCoreConfig,
} from "../server/config.ts";
import { corePermissions } from "./permissions.ts";
import { coreUsage } from "../server/usage.ts";
import { jsonLogLine } from "../server/log.ts";

/** Reads a positive integer setting, or exits with a clear message. */
function intSetting(name: string, fallback: number): number {
  const raw = Deno.env.get(name);
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`supervisor: ${name} must be a positive integer, got ${raw}`);
    Deno.exit(2);
  }
  return value;
}

const root = fileURLToPath(new URL("../", import.meta.url));
const script = Deno.env.get("SUPERVISOR_CHILD") || "server/main.ts";

let config: Readonly<CoreConfig> | undefined;
if (script === "server/main.ts") {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(coreUsage("deno task serve:core"));
    console.log(
      "\nThe supervisor restarts the core if it dies; settings (env):\n" +
        "  SUPERVISOR_BASE_DELAY_MS  100    first restart delay\n" +
        "  SUPERVISOR_MAX_DELAY_MS   5000   backoff cap\n" +
        "  SUPERVISOR_GIVE_UP_AFTER  10     deaths before ready in a row",
    );
    Deno.exit(0);
  }
  try {
    config = parseCoreConfig(Deno.args, Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`core: ${err.message}`);
    Deno.exit(2);
  }
}

// With --log-format json (or LOG_FORMAT=json, read directly for a child
// other than the core) the supervisor's own lines are JSON too: a collector
// reading the process's stderr then never meets a plain line among the
// core's.
const json = (config?.logFormat ??
  Deno.env.get(CORE_SETTINGS.logFormat.env)) === "json";
const log = json
  ? (line: string, level: LogLevel) =>
    console.error(
      jsonLogLine(level, "supervisor", line.replace(/^supervisor: /, "")),
    )
  : (line: string) => console.error(line);

const supervisor = superviseChild({
  cmd: Deno.execPath(),
  args: ["run", ...corePermissions(config), script, ...Deno.args],
  cwd: root,
  baseDelayMs: intSetting("SUPERVISOR_BASE_DELAY_MS", 100),
  maxDelayMs: intSetting("SUPERVISOR_MAX_DELAY_MS", 5_000),
  giveUpAfter: intSetting("SUPERVISOR_GIVE_UP_AFTER", 10),
  log,
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    log(`supervisor: ${signal} received, forwarding to the core`, "info");
    supervisor.stop(signal);
  });
}

const exit = await supervisor.done;
Deno.exit(exit.code);
