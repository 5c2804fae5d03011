/**
 * Fan-out scenario: S subscribers in one room, P publishers calling
 * SendMessage at full rate; deliveries/s, delivery latency, lost messages.
 *
 * Mirrors `chatload -scenario fanout`: subscribers spread over K connections,
 * publishers share one connection of their own, each subscriber waits for its
 * welcome before publishing starts, and after publishing stops the scenario
 * drains until every expected delivery arrived or progress stalls. Content is
 * `FO|<tag>|<performance.now() at send>`; tag `w` marks warm-up messages.
 *
 * @module
 */
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "../../gen/chat_pb.ts";
import { formatError } from "../../client/format.ts";
import { latencyFields, round1, round4, sleep } from "../stats.ts";
import {
  closeAll,
  connect,
  encode,
  paths,
  readStringField,
  serverStreamRaw,
  statusOf,
  unaryRaw,
} from "../wire.ts";

/** Parameters of the fan-out scenario. */
export interface FanoutOptions {
  addr: string;
  /** Publish to this server instead (another core on the same broker). */
  pubAddr?: string;
  subs: number;
  pubc: number;
  conns: number;
  durationS: number;
  warmupS: number;
  drainS: number;
}

const PREFIX = "FO|";

/** Runs the scenario; resolves to one result row. */
export async function runFanout(
  o: FanoutOptions,
): Promise<Record<string, unknown>> {
  const room = `fanout-${Date.now()}`;
  const subClients = await connect(o.addr, o.conns);
  const [pubClient] = await connect(o.pubAddr ?? o.addr, 1);
  const streams: ReturnType<typeof serverStreamRaw>[] = [];
  const lat: number[] = [];
  let received = 0, allDeliveries = 0, welcomes = 0, other = 0, lastRecv = 0;
  try {
    const ready: Promise<void>[] = [];
    for (let i = 0; i < o.subs; i++) {
      const s = serverStreamRaw(
        subClients[i % subClients.length],
        paths.SubscribeMessages,
        encode(SubscribeRequestSchema, { room, user: `sub${i}` }),
      );
      streams.push(s);
      s.on("error", () => {});
      let first = true;
      ready.push(
        new Promise((resolve, reject) => {
          statusOf(s).then((st) =>
            first && reject(new Error(`subscribe: ${st.code} ${st.details}`))
          );
          s.on("data", (bytes: Uint8Array) => {
            const now = performance.now();
            const content = readStringField(bytes, 3) ?? "";
            if (first) {
              first = false;
              if (content.startsWith("Welcome to room ")) welcomes++;
              return resolve();
            }
            if (!content.startsWith(PREFIX)) return void other++;
            allDeliveries++;
            const bar = content.indexOf("|", PREFIX.length);
            if (content.slice(PREFIX.length, bar) === "w") return;
            lat.push(now - Number(content.slice(bar + 1)));
            received++;
            lastRecv = now;
          });
        }),
      );
    }
    await Promise.race([
      Promise.all(ready),
      sleep(10_000).then(() =>
        Promise.reject(new Error("subscribe: no welcome within 10 s"))
      ),
    ]);

    let firstError: string | undefined;
    const publish = async (untilMs: number, warm: boolean) => {
      let sent = 0, errors = 0;
      await Promise.all(
        Array.from({ length: Math.max(1, o.pubc) }, async (_, g) => {
          for (let seq = 0; performance.now() < untilMs;) {
            const tag = warm ? "w" : `${g}.${seq}`;
            const req = encode(SendMessageRequestSchema, {
              user: "publisher",
              room,
              content: `${PREFIX}${tag}|${performance.now()}`,
            });
            try {
              await unaryRaw(pubClient, paths.SendMessage, req);
              seq++, sent++;
            } catch (err) {
              errors++;
              firstError ??= formatError(err);
              await sleep(1);
            }
          }
        }),
      );
      return { sent, errors };
    };
    if (o.warmupS > 0) {
      await publish(performance.now() + o.warmupS * 1000, true);
      await sleep(300);
    }
    const t0 = performance.now();
    const { sent, errors } = await publish(t0 + o.durationS * 1000, false);
    const pubEnd = performance.now();
    const expected = sent * o.subs;
    let last = -1, lastChange = performance.now();
    while (
      performance.now() < pubEnd + o.drainS * 1000 && received < expected
    ) {
      if (received !== last) last = received, lastChange = performance.now();
      else if (performance.now() - lastChange > 500) break;
      await sleep(10);
    }
    const got = received;
    const windowMs = Math.max(pubEnd - t0, lastRecv - t0);
    return {
      scenario: "fanout",
      ok: errors === 0 && sent > 0,
      subs: o.subs,
      pubc: o.pubc,
      conns: o.conns,
      duration_s: o.durationS,
      sent,
      publish_errors: errors,
      sent_per_s: round1(sent / ((pubEnd - t0) / 1000)),
      expected,
      received: got,
      lost: expected - got,
      loss_pct: round1((100 * (expected - got)) / Math.max(1, expected)),
      delivered_per_s: round1(got / (windowMs / 1000)),
      delivery_window_s: round4(windowMs / 1000),
      welcomes,
      ops_total: allDeliveries,
      other_msgs: other,
      ...latencyFields("delivery_", lat),
      ...(firstError ? { first_error: firstError } : {}),
    };
  } finally {
    for (const s of streams) s.cancel();
    closeAll([...subClients, pubClient]);
  }
}
