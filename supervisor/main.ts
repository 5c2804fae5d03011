/**
 * Entry of `deno task serve:core`: runs the core under the supervisor.
 *
 * Every argument passes through to the core (`deno task serve:core --port
 * 6000`). The core gets only the permissions it uses (net, env, read,
 * sys=uid, below, and write in its data directory only: `--data-dir`, else
 * CHAT_DATA_DIR, else `data`); this process needs --allow-run to spawn it
 * and --allow-env for the settings below.
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
import { superviseChild } from "./supervisor.ts";
import { ConfigError, parseCoreConfig } from "../server/config.ts";
import { coreUsage } from "../server/usage.ts";

/** The core's data directory as it will resolve it (flag, env, default). */
function dataDir(args: readonly string[]): string {
  let dir = Deno.env.get("CHAT_DATA_DIR") || "data";
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--data-dir" && i + 1 < args.length) dir = args[++i];
    else if (args[i].startsWith("--data-dir=")) dir = args[i].slice(11);
  }
  return dir;
}

// Read: TLS and JWT key files, the history store's worker module, and the
// .proto files grpc-health-check and @grpc/reflection load from
// node_modules at start-up (through fs.accessSync, which Deno checks
// against sys=uid).
const CHILD_PERMISSIONS = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-sys=uid",
  `--allow-write=${dataDir(Deno.args)}`,
];

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
    parseCoreConfig(Deno.args, Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`core: ${err.message}`);
    Deno.exit(2);
  }
}

const supervisor = superviseChild({
  cmd: Deno.execPath(),
  args: ["run", ...CHILD_PERMISSIONS, script, ...Deno.args],
  cwd: root,
  baseDelayMs: intSetting("SUPERVISOR_BASE_DELAY_MS", 100),
  maxDelayMs: intSetting("SUPERVISOR_MAX_DELAY_MS", 5_000),
  giveUpAfter: intSetting("SUPERVISOR_GIVE_UP_AFTER", 10),
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    console.error(`supervisor: ${signal} received, forwarding to the core`);
    supervisor.stop(signal);
  });
}

const exit = await supervisor.done;
Deno.exit(exit.code);
