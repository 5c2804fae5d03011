/**
 * Memory scenario: the server's resident memory with N idle subscribers.
 *
 * Opens N SubscribeMessages streams over K connections (the core allows
 * 1,000 streams per connection by default) in R rooms, waits for every
 * welcome, then reads VmRSS of the server's process group from /proc before
 * and after, so the result is the cost of holding subscribers rather than of
 * starting up. The target is N = 100,000 over K = 100 connections
 * (`memory_idle100k`, 100 rooms, and `memory_idle100k_room1`, one room).
 *
 * @module
 */
import { Metadata } from "@grpc/grpc-js";
import { SubscribeRequestSchema } from "../../gen/chat_pb.ts";
import { groupMemoryKb } from "../procfs.ts";
import { round1, sleep } from "../stats.ts";
import {
  closeAll,
  connect,
  encode,
  paths,
  serverStreamRaw,
  statusOf,
} from "../wire.ts";

/** Parameters of the memory scenario. */
export interface IdleOptions {
  addr: string;
  subs: number;
  conns: number;
  /** Rooms the subscribers are spread over (subscriber i joins room i % rooms). */
  rooms: number;
  /**
   * A bearer token for a core with auth on: every stream sends it, and the
   * requests name no user (the token's `sub` is taken).
   */
  token?: string;
  /** Process group of the server under test (its pid when started with setsid). */
  serverPgid: number;
  /** How long to hold the subscribers before reading memory. */
  settleMs: number;
}

/** Runs the scenario; resolves to one result row. */
export async function runIdleSubscribers(
  o: IdleOptions,
): Promise<Record<string, unknown>> {
  const before = groupMemoryKb(o.serverPgid);
  const rooms = Math.max(1, o.rooms);
  const metadata = new Metadata();
  if (o.token) metadata.set("authorization", `Bearer ${o.token}`);
  const clients = await connect(o.addr, o.conns);
  const streams: ReturnType<typeof serverStreamRaw>[] = [];
  let welcomed = 0, failed = 0;
  let firstError: string | undefined;
  try {
    const t0 = performance.now();
    const all = Array.from(
      { length: o.subs },
      (_, i) =>
        new Promise<void>((resolve) => {
          const s = serverStreamRaw(
            clients[i % clients.length],
            paths.SubscribeMessages,
            encode(SubscribeRequestSchema, {
              room: `idle-${i % rooms}`,
              user: o.token ? "" : `idle${i}`,
            }),
            metadata,
          );
          streams.push(s);
          s.on("error", () => {});
          s.once("data", () => (welcomed++, resolve()));
          statusOf(s).then((st) => {
            failed++;
            firstError ??= `${st.code} ${st.details}`;
            resolve();
          });
        }),
    );
    // grpc-js's client opens about 2,000 streams a second here.
    await Promise.race([Promise.all(all), sleep(60_000 + o.subs)]);
    const subscribeMs = performance.now() - t0;
    await sleep(o.settleMs);
    const held = groupMemoryKb(o.serverPgid);
    const perSubKb = (held.rssKb - before.rssKb) / Math.max(1, welcomed);
    return {
      scenario: "memory",
      subs: o.subs,
      conns: o.conns,
      rooms,
      auth: o.token !== undefined,
      welcomed,
      failed,
      subscribe_s: Math.round(subscribeMs / 10) / 100,
      rss_before_mb: round1(before.rssKb / 1024),
      rss_mb: round1(held.rssKb / 1024),
      hwm_mb: round1(held.hwmKb / 1024),
      rss_per_sub_kb: round1(perSubKb),
      server_processes: held.pids,
      ok: welcomed === o.subs && failed === 0,
      ...(firstError ? { first_error: firstError } : {}),
    };
  } finally {
    for (const s of streams) s.cancel();
    closeAll(clients);
  }
}
