/**
 * Which npm Redis client for the broker: `redis` (node-redis) against
 * `ioredis`, under Deno, on the broker's own traffic.
 *
 * Each round sends `XADD room * (payload)` + `PUBLISH room payload` for
 * `--messages` messages with `--inflight` pairs outstanding (both clients
 * pipeline commands issued in the same tick), while a second connection of
 * the same client is SUBSCRIBEd to the channel. Reports pairs/s and the
 * publish-to-receive latency (p50/p99) the subscriber sees. Starts its own
 * redis-server unless `--url` is given.
 *
 * ```sh
 * deno run -A bench/redis_clients.ts --messages 20000
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createClient } from "redis";
import { Redis } from "ioredis";
import { startRedisServer } from "../tools/serve/redis.ts";
import { quantile } from "./stats.ts";

interface Pair {
  pipeline(room: string, payload: string): Promise<unknown>;
  subscribe(room: string, onMessage: (m: string) => void): Promise<void>;
  close(): Promise<void>;
}

async function nodeRedis(url: string): Promise<Pair> {
  const pub = createClient({ url });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  return {
    pipeline: (room, payload) =>
      Promise.all([
        pub.xAdd(`bench:{${room}}`, "*", { p: payload }),
        pub.publish(room, payload),
      ]),
    subscribe: (room, onMessage) => sub.subscribe(room, onMessage),
    async close() {
      await Promise.all([pub.close(), sub.close()]);
    },
  };
}

async function ioRedis(url: string): Promise<Pair> {
  const pub = new Redis(url, { enableAutoPipelining: true, lazyConnect: true });
  const sub = new Redis(url, { lazyConnect: true });
  await Promise.all([pub.connect(), sub.connect()]);
  return {
    pipeline: (room, payload) =>
      Promise.all([
        pub.xadd(`bench:{${room}}`, "*", "p", payload),
        pub.publish(room, payload),
      ]),
    async subscribe(room, onMessage) {
      sub.on("message", (_channel: string, m: string) => onMessage(m));
      await sub.subscribe(room);
    },
    async close() {
      await Promise.all([pub.quit(), sub.quit()]);
    },
  };
}

async function round(
  name: string,
  make: (url: string) => Promise<Pair>,
  url: string,
  messages: number,
  inflight: number,
): Promise<void> {
  const pair = await make(url);
  const room = `${name}-${Date.now()}`;
  const latencies: number[] = [];
  let received = 0;
  let allReceived!: () => void;
  const done = new Promise<void>((r) => allReceived = r);
  await pair.subscribe(room, (m) => {
    latencies.push(performance.now() - Number(m.slice(0, m.indexOf(" "))));
    if (++received === messages) allReceived();
  });
  const filler = "x".repeat(100);
  const start = performance.now();
  let sent = 0;
  const worker = async () => {
    while (sent < messages) {
      sent++;
      await pair.pipeline(room, `${performance.now()} ${filler}`);
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  await done;
  const secs = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  console.log(
    `${name.padEnd(8)} ${Math.round(messages / secs)} XADD+PUBLISH/s, ` +
      `delivery p50 ${quantile(latencies, 0.5).toFixed(2)} ms, ` +
      `p99 ${quantile(latencies, 0.99).toFixed(2)} ms`,
  );
  await pair.close();
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      messages: { type: "string", default: "20000" },
      inflight: { type: "string", default: "64" },
      rounds: { type: "string", default: "2" },
    },
  });
  const own = values.url ? undefined : await startRedisServer();
  const url = values.url ?? own!.url;
  const messages = Number(values.messages);
  const inflight = Number(values.inflight);
  for (let i = 0; i < Number(values.rounds); i++) {
    await round("redis", nodeRedis, url, messages, inflight);
    await round("ioredis", ioRedis, url, messages, inflight);
  }
  await own?.stop();
}
