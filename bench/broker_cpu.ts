/**
 * CPU per delivery of fan-out through Redis beside the embedded store, for
 * issue 15's "through Redis ≥ 0.8x the embedded store's deliveries/s": the
 * Go load generator (`chatload -scenario fanout`) against one core pinned to
 * CPU 0 (load and redis-server on CPU 1, as compare.sh pins), set-ups
 * interleaved round by round so that each ratio is measured back to back.
 *
 * For each run: deliveries/s (chatload's), the core's CPU µs per delivery
 * and redis-server's, both from /proc over the measured window (sampled
 * after the warm-up, until just before the end).
 *
 * A set-up is `name=flags` (core flags; `{redis}` is the Redis URL) and may
 * run another build with `name@/path/to/tree=flags`, for old/new A/Bs.
 * Flags starting with `@ceiling` run the bare server of
 * `bench/ceiling/deno_listen_h2.ts` instead of the core, with the rest of
 * the flags (`{redis-addr}` is Redis's host:port): its `--redis` mode is
 * the runtime's ceiling for fan-out through Redis.
 *
 * ```sh
 * deno run -A bench/broker_cpu.ts                       # memory vs redis, 4 cases, 3 rounds
 * deno run -A bench/broker_cpu.ts --rounds 1 --d 3 --cases s100_p4
 * deno run -A bench/broker_cpu.ts --setup "memory=--store memory" \
 *   --setup "redis=--broker {redis}" --setup "old@/tmp/old=--broker {redis}"
 * deno run -A bench/broker_cpu.ts --cases s10_p1,s100_p4 \
 *   --setup "log=" --setup "redis=--broker {redis}" \
 *   --setup "ceiling=@ceiling" --setup "ceiling-redis=@ceiling --redis {redis-addr}"
 * ```
 *
 * Prints one JSON line per run, then a summary per case and set-up
 * (medians) with the ratio to the first set-up.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startRedisServer } from "../tools/serve/redis.ts";
import { groupCpuSeconds } from "./procfs.ts";
import { canPin, type ServerProcess, startServer } from "./procs.ts";
import { sleep } from "./stats.ts";

const CASES: Record<string, string[]> = {
  s10_p1: ["-subs", "10", "-pubc", "1", "-conns", "1"],
  s10_p4: ["-subs", "10", "-pubc", "4", "-conns", "1"],
  s100_p1: ["-subs", "100", "-pubc", "1", "-conns", "4"],
  s100_p4: ["-subs", "100", "-pubc", "4", "-conns", "4"],
  // Enough publishers to keep the core busy: CPU-bound, not latency-bound.
  s10_p16: ["-subs", "10", "-pubc", "16", "-conns", "1"],
  s100_p16: ["-subs", "100", "-pubc", "16", "-conns", "4"],
};

const { values } = parseArgs({
  args: Deno.args,
  options: {
    setup: { type: "string", multiple: true },
    cases: { type: "string", default: "s10_p1,s10_p4,s100_p1,s100_p4" },
    rounds: { type: "string", default: "3" },
    d: { type: "string", default: "4" },
    warmup: { type: "string", default: "1" },
    chatload: { type: "string", default: "/tmp/chat-bench/bin/chatload" },
    logs: { type: "string", default: ".bench/broker" },
    // redis-server's CPU: 1 (with the load, the default) or 0 (with the core).
    "redis-cpu": { type: "string", default: "1" },
  },
});
const setups = (values.setup?.length ? values.setup : [
  "memory=--store memory",
  "redis=--broker {redis}",
]).map((s) => {
  const eq = s.indexOf("=");
  const head = s.slice(0, eq);
  const [name, tree] = head.split("@");
  return {
    name,
    root: tree ?? new URL("../", import.meta.url).pathname,
    flags: s.slice(eq + 1),
  };
});
const d = Number(values.d);
const warmup = Number(values.warmup);
const pin = canPin();
await Deno.mkdir(values.logs, { recursive: true });

async function runOnce(
  setup: typeof setups[number],
  name: string,
): Promise<Record<string, unknown>> {
  await using redis = await startRedisServer();
  if (pin) {
    await new Deno.Command("taskset", {
      args: ["-cp", values["redis-cpu"], String(redis.pid)],
      stdout: "null",
    }).output();
  }
  const flags = setup.flags.replaceAll("{redis}", redis.url)
    .replaceAll("{redis-addr}", new URL(redis.url).host);
  // A fresh history for the default store, as for redis-server.
  const dataDir = `${values.logs}/data-${setup.name}`;
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  const run = `${Deno.execPath()} run -A ${setup.root}`;
  const core: ServerProcess = await startServer(
    flags.startsWith("@ceiling")
      ? `${run}bench/ceiling/deno_listen_h2.ts --port {port} ` +
        flags.slice("@ceiling".length)
      : `${run}server/main.ts --port {port} ` +
        `--alive-interval-ms 0 --data-dir ${dataDir} ` + flags,
    { cpu: pin ? 0 : undefined, logPath: `${values.logs}/core.log` },
  );
  try {
    const args = [
      "-addr",
      `127.0.0.1:${core.port}`,
      "-scenario",
      "fanout",
      ...CASES[name],
      "-d",
      String(d),
      "-warmup",
      String(warmup),
      "-label",
      setup.name,
    ];
    const child = new Deno.Command(pin ? "taskset" : values.chatload, {
      args: pin ? ["-c", "1", values.chatload, ...args] : args,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    // The window: from just after the warm-up to just before the end.
    await sleep((warmup + 0.4) * 1000);
    // redis-server leads no process group: groupCpuSeconds() reads its pid.
    const c0 = groupCpuSeconds(core.pid), r0 = groupCpuSeconds(redis.pid);
    const t0 = performance.now();
    await sleep((d - 0.6) * 1000);
    const c1 = groupCpuSeconds(core.pid), r1 = groupCpuSeconds(redis.pid);
    const secs = (performance.now() - t0) / 1000;
    const out = await child.output();
    const line = new TextDecoder().decode(out.stdout).trim().split("\n")
      .at(-1)!;
    const r = JSON.parse(line);
    const perSec = r.delivered_per_s as number;
    const us = (cpu: number) =>
      Math.round(cpu / (perSec * secs) * 1e6 * 100) / 100;
    return {
      setup: setup.name,
      case: name,
      deliveries_per_s: Math.round(perSec),
      sent_per_s: Math.round(r.sent_per_s),
      core_cpu_us_per_delivery: us(c1 - c0),
      redis_cpu_us_per_delivery: us(r1 - r0),
      core_cpu_share: Math.round((c1 - c0) / secs * 100) / 100,
      p50_us: r.delivery_p50_us,
      p99_us: r.delivery_p99_us,
      lost: r.lost,
      errors: r.publish_errors,
    };
  } finally {
    await core.stop();
  }
}

const results: Record<string, unknown>[] = [];
const caseNames = values.cases.split(",");
for (let round = 0; round < Number(values.rounds); round++) {
  for (const name of caseNames) {
    for (const setup of setups) {
      const r = await runOnce(setup, name);
      console.log(JSON.stringify(r));
      results.push(r);
    }
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? s[s.length >> 1]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
for (const name of caseNames) {
  const base = median(
    results.filter((r) => r.case === name && r.setup === setups[0].name)
      .map((r) => r.deliveries_per_s as number),
  );
  for (const setup of setups) {
    const rs = results.filter((r) => r.case === name && r.setup === setup.name);
    const m = (k: string) => median(rs.map((r) => r[k] as number));
    console.log(
      `${name.padEnd(8)} ${setup.name.padEnd(10)} ` +
        `${String(m("deliveries_per_s")).padStart(8)}/s ` +
        `x${(m("deliveries_per_s") / base).toFixed(2)}  core ` +
        `${m("core_cpu_us_per_delivery").toFixed(2)} µs/del  redis ` +
        `${m("redis_cpu_us_per_delivery").toFixed(2)} µs/del  p99 ` +
        `${Math.round(m("p99_us"))} µs`,
    );
  }
}
