/**
 * Entry of `deno task serve:core`: runs the core under the supervisor.
 *
 * Every argument passes through to the core (`deno task serve:core --port
 * 6000`). The core gets only the permissions it uses: net, env, read
 * (certificates, keys, the history store's worker module) and write in its
 * data directory only (`--data-dir`, else CHAT_DATA_DIR, else `data`); this
 * process needs --allow-run to spawn it and --allow-env for the settings
 * below.
 *
 * Environment: SUPERVISOR_CHILD (script to run, relative to the project
 * root; default server/main.ts), SUPERVISOR_BASE_DELAY_MS (first restart
 * delay, default 100), SUPERVISOR_MAX_DELAY_MS (backoff cap, default 5000),
 * SUPERVISOR_GIVE_UP_AFTER (deaths before ready in a row, default 10).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { superviseChild } from "./supervisor.ts";

/** The core's data directory as it will resolve it (flag, env, default). */
function dataDir(args: readonly string[]): string {
  let dir = Deno.env.get("CHAT_DATA_DIR") || "data";
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--data-dir" && i + 1 < args.length) dir = args[++i];
    else if (args[i].startsWith("--data-dir=")) dir = args[i].slice(11);
  }
  return dir;
}

const CHILD_PERMISSIONS = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
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
