/**
 * Chat scenario: bidi echo round trips (ping-pong p50/p99) and pipelined
 * echoes/s on one Chat stream, like `chatload -scenario chat`.
 *
 * Ping-pong sends one message and waits for its `echo_<id>`; pipelined sends
 * N without waiting (respecting backpressure) while the reader counts echoes.
 * Heartbeats and anything else are counted but not mistaken for echoes.
 *
 * @module
 */
import { MessageSchema } from "../../gen/chat_pb.ts";
import { formatError } from "../../client/format.ts";
import { latencyFields, round1, round4, sleep } from "../stats.ts";
import {
  bidiRaw,
  closeAll,
  connect,
  encode,
  paths,
  readStringField,
  statusOf,
  writeWithBackpressure,
} from "../wire.ts";

/** Parameters of the chat scenario. */
export interface ChatOptions {
  addr: string;
  n: number;
}

/** Runs the scenario; resolves to one result row. */
export async function runChat(
  o: ChatOptions,
): Promise<Record<string, unknown>> {
  const [client] = await connect(o.addr, 1);
  const stream = bidiRaw(client, paths.Chat);
  const room = `chat-${Date.now()}`;
  let heartbeats = 0, others = 0, pipelined = 0;
  let waiting: { id: string; resolve: () => void } | undefined;
  let failure: string | undefined;
  let wake = () => {};
  stream.on("error", (err) => {
    failure ??= formatError(err);
    wake();
  });
  stream.on("data", (bytes: Uint8Array) => {
    const id = readStringField(bytes, 1) ?? "";
    if (id.startsWith("echo_q")) {
      pipelined++;
      if (pipelined >= o.n) wake();
    } else if (waiting && id === `echo_${waiting.id}`) {
      const w = waiting;
      waiting = undefined;
      w.resolve();
    } else if ((readStringField(bytes, 3) ?? "").includes("alive")) {
      heartbeats++;
    } else others++;
  });
  const ended = statusOf(stream);
  const msg = (id: string, user: string) =>
    encode(MessageSchema, { id, user, content: `ping#${id}`, room });
  const pingPong = async (id: string) => {
    const echoed = new Promise<void>((resolve) => waiting = { id, resolve });
    await writeWithBackpressure(stream, msg(id, "pinger"));
    await Promise.race([echoed, ended]);
    if (failure) throw new Error(failure);
  };
  try {
    const wn = Math.min(1000, Math.floor(o.n / 10));
    for (let i = 0; i < wn; i++) await pingPong(`w${i}`);
    const lat: number[] = [];
    const tpp = performance.now();
    for (let i = 0; i < o.n; i++) {
      const t0 = performance.now();
      await pingPong(`p${i}`);
      lat.push(performance.now() - t0);
    }
    const ppMs = performance.now() - tpp;

    const queued = Array.from(
      { length: o.n },
      (_, i) => msg(`q${i}`, "pipeliner"),
    );
    const allEchoed = new Promise<void>((r) => wake = r);
    const t1 = performance.now();
    for (const m of queued) await writeWithBackpressure(stream, m);
    const sendMs = performance.now() - t1;
    await Promise.race([allEchoed, sleep(30_000)]);
    const pipeMs = performance.now() - t1;
    return {
      scenario: "chat",
      n: o.n,
      pingpong_rtt_per_s: round1(o.n / (ppMs / 1000)),
      pipelined_echoes: pipelined,
      ops_total: wn + o.n + pipelined,
      pipelined_elapsed_s: round4(pipeMs / 1000),
      pipelined_send_s: round4(sendMs / 1000),
      pipelined_msgs_per_s: round1(pipelined / (pipeMs / 1000)),
      heartbeats_seen: heartbeats,
      other_msgs: others,
      ok: failure === undefined && pipelined === o.n,
      ...latencyFields("pingpong_", lat),
      ...(failure ? { error: failure } : {}),
    };
  } finally {
    stream.end();
    stream.cancel();
    closeAll([client]);
  }
}
