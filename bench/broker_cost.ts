/**
 * The Redis broker's cost per message, for the scale-out estimate in
 * BENCHMARKS.md: Redis CPU per stored-and-published message (the append
 * script: INCRBY, XADD, PEXPIRE, PUBLISH), the rate one core's broker
 * connection reaches, and the publish-to-delivery latency seen by `--cores`
 * followers (each one broker connection pair, like one core). With
 * `--cores 0` the publisher follows the room itself, as one core with
 * `--broker` does for its own subscribers.
 *
 * Redis CPU comes from `INFO cpu` (used_cpu_user + used_cpu_sys) before and
 * after, so it is Redis's own time, not the client's; the client's (the
 * publisher and every follower, all in this process) from /proc/self.
 *
 * ```sh
 * deno run -A bench/broker_cost.ts --messages 20000 --batch 1 --cores 3
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createClient } from "redis";
import { connectRedisBroker } from "../server/broker/redis_broker.ts";
import { startRedisServer } from "../tools/serve/redis.ts";
import { quantile, selfCpuSeconds } from "./stats.ts";

async function redisCpuSeconds(
  admin: { info(section: string): Promise<unknown> },
): Promise<number> {
  const info = String(await admin.info("cpu"));
  const field = (name: string) =>
    Number(info.match(new RegExp(`${name}:([\\d.]+)`))?.[1] ?? NaN);
  return field("used_cpu_user") + field("used_cpu_sys");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      messages: { type: "string", default: "20000" },
      batch: { type: "string", default: "1" },
      inflight: { type: "string", default: "16" },
      cores: { type: "string", default: "3" },
      rooms: { type: "string", default: "1" },
      bytes: { type: "string", default: "100" },
      // Pin the redis-server this starts to one CPU (apart from this one).
      "redis-cpu": { type: "string" },
    },
  });
  const messages = Number(values.messages);
  const batch = Number(values.batch);
  const inflight = Number(values.inflight);
  const rooms = Number(values.rooms);
  const own = values.url ? undefined : await startRedisServer();
  const url = values.url ?? own!.url;
  if (own && values["redis-cpu"] !== undefined) {
    await new Deno.Command("taskset", {
      args: ["-cp", values["redis-cpu"], String(own.pid)],
      stdout: "null",
    }).output();
  }
  const opts = { url, size: 1000, ttlMs: 86_400_000 };
  const publisher = await connectRedisBroker(opts);
  const followers = Number(values.cores) === 0
    ? [publisher]
    : await Promise.all(
      Array.from(
        { length: Number(values.cores) },
        () => connectRedisBroker(opts),
      ),
    );
  const admin = createClient({ url });
  await admin.connect();

  const body = new Uint8Array(Number(values.bytes)).fill(120);
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let delivered = 0;
  const expected = messages * followers.length;
  let allDone!: () => void;
  const done = new Promise<void>((r) => allDone = r);
  const stops: (() => void)[] = [];
  for (const f of followers) {
    for (let r = 0; r < rooms; r++) {
      const room = `bench-${r}`;
      const { stop } = await f.follow(room, (_epoch, offset) => {
        const t = sentAt.get(`${room}/${offset}`);
        if (t !== undefined) latencies.push(performance.now() - t);
        if (++delivered === expected) allDone();
      });
      stops.push(stop);
    }
  }

  const cpu0 = await redisCpuSeconds(admin);
  const self0 = selfCpuSeconds();
  const start = performance.now();
  let sent = 0;
  const worker = async () => {
    while (sent < messages) {
      const n = Math.min(batch, messages - sent);
      sent += n;
      const room = `bench-${sent % rooms}`;
      const t = performance.now();
      const stored = await publisher.append(
        Array.from({ length: n }, () => ({ room, body, timeMs: Date.now() })),
        0,
      );
      for (const s of stored) sentAt.set(`${room}/${s.offset}`, t);
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  const appendSecs = (performance.now() - start) / 1000;
  await done;
  const cpu1 = await redisCpuSeconds(admin);
  const self1 = selfCpuSeconds();
  latencies.sort((a, b) => a - b);
  const result = {
    messages,
    batch,
    followers: followers.length,
    rooms,
    body_bytes: body.length,
    appends_per_s: Math.round(messages / appendSecs),
    deliveries_per_s: Math.round(
      expected / ((performance.now() - start) / 1000),
    ),
    redis_cpu_us_per_message: Math.round((cpu1 - cpu0) / messages * 1e7) / 10,
    // This process: the publisher's broker and every follower's.
    client_cpu_us_per_message: Math.round((self1 - self0) / messages * 1e7) /
      10,
    delivery_p50_ms: Number(quantile(latencies, 0.5).toFixed(2)),
    delivery_p99_ms: Number(quantile(latencies, 0.99).toFixed(2)),
  };
  console.log(JSON.stringify(result));
  for (const stop of stops) stop();
  await admin.close();
  await Promise.all(
    [...new Set([publisher, ...followers])].map((b) => b.close()),
  );
  await own?.stop();
}
