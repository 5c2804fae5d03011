/**
 * Fan-out through Redis beside the embedded store, for BENCHMARKS.md:
 * deliveries/s and delivery latency (p50/p99) of `fanout` (S subscribers,
 * P publishers) in three set-ups, each on fresh processes:
 *
 * - `embedded`: one core, history in its own store (the default);
 * - `redis_same_core`: one core with `--broker`, publishers and
 *   subscribers on it (every message goes through Redis and back);
 * - `redis_cross_core`: two cores on one Redis, subscribers on one and
 *   publishers on the other.
 *
 * Starts its own redis-server. Prints one JSON line per set-up.
 *
 * ```sh
 * deno run -A bench/broker_fanout.ts             # 5 s per set-up
 * deno run -A bench/broker_fanout.ts --short     # smoke run
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startRedisServer } from "../tools/serve/redis.ts";
import { type ServerProcess, startServer } from "./procs.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    short: { type: "boolean", default: false },
    subs: { type: "string", default: "100" },
    pubc: { type: "string", default: "4" },
    conns: { type: "string", default: "4" },
    d: { type: "string" },
    logs: { type: "string", default: ".bench/broker" },
  },
});
const d = values.d ?? (values.short ? "0.5" : "5");
const root = new URL("../", import.meta.url).pathname;
await Deno.mkdir(values.logs, { recursive: true });

const core = (extra: string) =>
  `${Deno.execPath()} run -A ${root}server/main.ts --port {port} ` +
  `--alive-interval-ms 0 ${extra}`;

async function load(addr: string, pubAddr: string, label: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${root}bench/load_main.ts`,
      "--scenario",
      "fanout",
      "--addr",
      addr,
      "--pub-addr",
      pubAddr,
      "--subs",
      values.subs,
      "--pubc",
      values.pubc,
      "--conns",
      values.conns,
      "--d",
      d,
      "--warmup",
      values.short ? "0.2" : "1",
      "--label",
      label,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1);
  console.log(line);
}

async function withServers(
  cmds: string[],
  run: (servers: ServerProcess[]) => Promise<void>,
) {
  const servers: ServerProcess[] = [];
  try {
    for (const [i, cmd] of cmds.entries()) {
      servers.push(
        await startServer(cmd, { logPath: `${values.logs}/core-${i}.log` }),
      );
    }
    await run(servers);
  } finally {
    for (const s of servers) await s.stop();
  }
}

const addr = (s: ServerProcess) => `127.0.0.1:${s.port}`;

await withServers([core("")], ([e]) => load(addr(e), addr(e), "embedded"));

const redis = await startRedisServer();
try {
  const broker = `--broker ${redis.url}`;
  await withServers(
    [core(broker)],
    ([a]) => load(addr(a), addr(a), "redis_same_core"),
  );
  await withServers(
    [core(broker), core(broker)],
    ([a, b]) => load(addr(a), addr(b), "redis_cross_core"),
  );
} finally {
  await redis.stop();
}
