/**
 * A soak of the whole stack: does the core or the edge grow with the number
 * of calls under a long, mixed, churning load, and do their gauges of open
 * streams, subscribers and sockets come back to 0 once it stops?
 *
 * Starts a core (`server/main.ts`, the default log store in a fresh
 * `--data-dir`, a small `--history-size` so that retained history reaches its
 * bound within the warm-up and cannot pass for a leak, `--presence`,
 * `--metrics-port`) and an edge (`edge/main.ts`, per-call log lines on) as
 * separate processes, each through bench/soak_entry.ts (which writes its
 * live heap after a forced full collection every 5 s), then for `--minutes`
 * drives, over `--rooms` room names reused, from `--workers` loops paced to
 * `--rate` operations a second, each picked at random (`--ops REGEX` keeps
 * only the operations it matches, to find which one grows):
 *
 * - direct gRPC (grpc-js, client/rpc.ts): SendMessage, also with an
 *   idempotency key, new or sent before (its repeat must get the first's
 *   message id); UploadMessages and Chat of keyed lines sent again with
 *   the same keys (as they were, after a cut, with more lines; the Chat
 *   lines not seen echoed), each in a room of its own watched by a
 *   subscription: every line counted or echoed, each key stored once
 *   ("REPEAT MISMATCH" otherwise); SubscribeMessages
 *   (read a few, cancel, resume with epoch + since_offset); UploadMessages
 *   and Chat, finished or cancelled half-way; short deadlines that expire;
 *   INVALID_ARGUMENT requests; ListPresence; StreamMetrics; health Check,
 *   Watch (and Watch of a new unknown name each time); reflection; a fresh
 *   channel now and then (connection churn); a subscriber that stops reading
 *   while 250 KB go to its room (it falls behind, then catches up);
 * - through the edge: gRPC-Web (connect-web) unary, server streams and
 *   deadlines, grpc-web-text, a malformed frame, gzip both ways
 *   (connect-node); Connect unary (JSON and binary) and server streams,
 *   gzip both ways; client streaming over a streamed request body (HTTP/1.1
 *   chunked); bidi over HTTP/2 (connect-node), finished or left after the
 *   first echo, and over HTTP/1.1 (refused: edge/http1.ts);
 *   ListPresence and StreamMetrics; the page, its assets and /healthz; a
 *   gRPC-Web subscriber that leaves its body unread; a fresh HTTP client now
 *   and then;
 * - the WebSocket bridge (web/ws_call.ts): Chat, UploadMessages (also
 *   keyed, sent again) and SubscribeMessages opened and closed, cancelled,
 *   ended by their deadline, given bad requests, or abandoned: the TCP
 *   connection dropped mid-call without a close frame (a raw socket, as a
 *   closed tab);
 * - `--subscribers` long-lived subscriptions (5-60 s each, then another),
 *   over gRPC, gRPC-Web, Connect and the bridge, reading what the rooms get.
 *
 * Every `--sample-seconds` it prints a row: operations so far, each
 * process's RSS (from /proc, bench/procfs.ts), live heap and external
 * memory, the core's V8 heap as it stands and its gauges (its Prometheus
 * `/metrics`: README "Operating it"), the edge's gauges (its `/metrics`),
 * and the CPU each used. At the end it stops the load, closes every client,
 * waits `--idle-seconds`, prints the outcomes of the operations (and the
 * unexpected ones: a hang, UNAVAILABLE, INTERNAL, UNKNOWN), the start, warm,
 * end and idle samples, the slope of RSS and heap over the operations after
 * `--warmup-seconds`, and the gauges that must be back to 0 (with, if a
 * subscriber is left, where: `--presence`). It exits 1 if a gauge is not
 * back to 0 or an outcome was unexpected.
 *
 * ```sh
 * deno run -A bench/soak.ts [--minutes 10] [--rate 400] [--rooms 200]
 * ```
 *
 * A measuring tool only, not part of the product.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import {
  compressionGzip,
  createConnectTransport as createNodeConnectTransport,
  createGrpcWebTransport as createNodeGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { Buffer } from "node:buffer";
import { gzipSync } from "node:zlib";
import {
  ChatService,
  type Message,
  MessageSchema,
  MessageType,
  MetricsRequestSchema,
  SendMessageRequestSchema,
  SubscribeRequestSchema,
  UploadResponseSchema,
} from "../gen/chat_pb.ts";
import {
  encodeBase64,
  encodeEnvelope,
  FLAG_COMPRESSED,
} from "../protocol/mod.ts";
import { healthClient } from "../tests/support/health.ts";
import {
  callEnded,
  type ChatClient,
  createChatClient,
  deadlineIn,
  type MessageInit,
} from "../client/rpc.ts";
import { openWsCall, type WsCall } from "../web/ws_call.ts";
import { encodeFrame, FLAG_DATA, FLAG_END } from "../protocol/ws_bridge.ts";
import { disconnectingFetch } from "../tests/fixtures/edge_stack.ts";
import {
  connectJsonBody,
  pushBody,
  readConnectStream,
  readGrpcWeb,
  wsClientFrame,
} from "../tests/fixtures/edge_raw.ts";
import { freePort, type ServerProcess, startServer } from "./procs.ts";
import { groupCpuSeconds, groupMemoryKb } from "./procfs.ts";
import { clockTicks } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string", default: "10" },
    rate: { type: "string", default: "400" },
    workers: { type: "string", default: "32" },
    subscribers: { type: "string", default: "40" },
    rooms: { type: "string", default: "200" },
    "history-size": { type: "string", default: "20" },
    "sample-seconds": { type: "string", default: "15" },
    "warmup-seconds": { type: "string", default: "" },
    "idle-seconds": { type: "string", default: "20" },
    "edge-log": { type: "string", default: "text" },
    "keep-logs": { type: "boolean", default: false },
    ops: { type: "string", default: "" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    "deno run -A bench/soak.ts [--minutes 10] [--rate 400] [--workers 32]\n" +
      "  [--subscribers 40] [--rooms 200] [--history-size 20]\n" +
      "  [--sample-seconds 15] [--warmup-seconds D/5] [--idle-seconds 20]\n" +
      "  [--edge-log text|json|off] [--keep-logs] [--ops REGEX]",
  );
  Deno.exit(0);
}
const durationMs = Number(values.minutes) * 60_000;
const rate = Number(values.rate);
const roomCount = Number(values.rooms);
const sampleMs = Number(values["sample-seconds"]) * 1000;
const warmupMs = values["warmup-seconds"] === ""
  ? Math.min(180_000, durationMs / 5)
  : Number(values["warmup-seconds"]) * 1000;
const root = new URL("..", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "soak-" });
const dataDir = `${tmp}/data`;
await Deno.mkdir(dataDir);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MB = 1024 * 1024;
const rnd = (n: number) => Math.floor(Math.random() * n);
const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)];
const rooms = Array.from({ length: roomCount }, (_, i) => `soak-${i}`);
const room = () => pick(rooms);
const user = () => `u${rnd(50)}`;

// ---------------------------------------------------------------------------
// The processes.

const metricsPort = freePort();
/**
 * `deno run` of `entry` through bench/soak_entry.ts, which writes the live
 * heap (after a forced collection) to `${tmp}/${name}-memory.json`.
 */
const run = (name: string, entry: string) =>
  `env SOAK_ENTRY=${entry} SOAK_MEMORY_FILE=${tmp}/${name}-memory.json ` +
  `deno run -A --v8-flags=--expose-gc ${root}bench/soak_entry.ts`;
const core: ServerProcess = await startServer(
  `${run("core", "../server/main.ts")} --port {port}` +
    ` --metrics-port ${metricsPort} --data-dir ${dataDir}` +
    ` --history-size ${values["history-size"]} --presence`,
  { logPath: `${tmp}/core.log` },
);
const edge: ServerProcess = await startServer(
  `${run("edge", "../edge/main.ts")} --port {port} ` +
    `--upstream http://127.0.0.1:${core.port} --log-format ${
      values["edge-log"]
    }`,
  { logPath: `${tmp}/edge.log` },
);
/** The live heap and external memory a process last wrote, in MB. */
function liveMemory(name: string): { heapMb: number; externalMb: number } {
  try {
    const m = JSON.parse(Deno.readTextFileSync(`${tmp}/${name}-memory.json`));
    return { heapMb: m.heapUsed / MB, externalMb: m.external / MB };
  } catch {
    return { heapMb: NaN, externalMb: NaN };
  }
}
const coreAddr = `127.0.0.1:${core.port}`;
const edgeUrl = `http://127.0.0.1:${edge.port}`;
const wsUrl = `ws://127.0.0.1:${edge.port}/ws`;
console.log(
  `core pid ${core.pid} on ${coreAddr} (metrics ${metricsPort}), edge pid ` +
    `${edge.pid} on ${edgeUrl}; logs and data in ${tmp}`,
);

// ---------------------------------------------------------------------------
// Counting.

const counts = new Map<string, number>();
let ops = 0;
const count = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
/** Outcomes worth a look: a hang, an error no operation expects. */
const surprises = new Map<string, number>();
const surprise = (key: string) =>
  surprises.set(key, (surprises.get(key) ?? 0) + 1);

/** The first message seen with each unexpected code, for the report. */
const errorMessages = new Map<string, string>();
function noteError(code: number, message: string) {
  if ((code === 2 || code === 13 || code === 14) && errorMessages.size < 20) {
    const key = `${code}: ${message}`.slice(0, 200);
    if (!errorMessages.has(key)) errorMessages.set(key, key);
  }
}

function grpcCode(err: unknown): string {
  const e = err as { code?: number; details?: string } | undefined;
  if (e?.code === undefined) return "OK";
  noteError(e.code, `grpc-js ${e.details}`);
  return String(e.code);
}

/** gRPC code number for a connect-es error (same numbering). */
function connectCode(err: unknown): number {
  if (err === undefined) return 0;
  const e = ConnectError.from(err);
  noteError(e.code, `connect-es ${e.message} (cause: ${e.cause})`);
  return e.code;
}

/** "OK", or the code a grpc-js call ended with. */
const grpcOutcome = (call: Promise<unknown>): Promise<string> =>
  call.then(() => "OK", grpcCode);

/** "OK", or the code a connect-es call ended with. */
const connectOutcome = (call: Promise<unknown>): Promise<string> =>
  call.then(() => "OK", (err) => String(connectCode(err)));

// ---------------------------------------------------------------------------
// Clients.

const channels: ChatClient[] = Array.from(
  { length: 4 },
  (_, i) => createChatClient(coreAddr, { "soak.channel": i }),
);
const grpcClient = () => pick(channels);
const httpClient = Deno.createHttpClient({});
const edgeFetch = disconnectingFetch(httpClient);
const grpcWeb = createClient(
  ChatService,
  createGrpcWebTransport({ baseUrl: edgeUrl, fetch: edgeFetch }),
);
const connect = createClient(
  ChatService,
  createConnectTransport({ baseUrl: edgeUrl, fetch: edgeFetch }),
);

function post(u = user(), r = room(), content = "soak line"): MessageInit {
  return { user: u, room: r, content, type: MessageType.CHAT };
}
const postBytes = (m: MessageInit) =>
  toBinary(MessageSchema, create(MessageSchema, m));

/**
 * Reads up to `n` messages of a grpc-js stream (or until `ms` passed or it
 * ended); resolves with them and the error it ended with, if it did.
 */
function readGrpc<T>(
  stream: grpc.ClientReadableStream<T>,
  n: number,
  ms: number,
): Promise<{ got: T[]; err?: unknown; ended: boolean }> {
  return new Promise((resolve) => {
    const got: T[] = [];
    let done = false;
    const finish = (err?: unknown, ended = false) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.off("data", onData);
      resolve({ got, err, ended });
    };
    const onData = (m: T) => {
      got.push(m);
      if (got.length >= n) finish();
    };
    const timer = setTimeout(() => finish(), ms);
    stream.on("data", onData);
    stream.on("error", (e) => finish(e, true));
    stream.on("end", () => finish(undefined, true));
  });
}

/** Reads up to `n` messages of an async iterable with a bound on time. */
async function readIter<T>(
  it: AsyncIterable<T>,
  n: number,
  ctl: AbortController,
  ms: number,
  onMessage?: (m: T) => void,
): Promise<{ got: T[]; err?: unknown }> {
  const got: T[] = [];
  const timer = setTimeout(() => ctl.abort(), ms);
  try {
    for await (const m of it) {
      got.push(m);
      onMessage?.(m);
      if (got.length >= n) break;
    }
    return { got };
  } catch (err) {
    return { got, err };
  } finally {
    clearTimeout(timer);
  }
}

/** Reads up to `n` bridge messages, then `cancel`s unless it ended. */
async function readWs(
  call: WsCall,
  n: number,
  ms: number,
): Promise<number> {
  let got = 0;
  const timer = setTimeout(() => call.cancel(), ms);
  try {
    for await (const _ of call.messages) if (++got >= n) break;
  } finally {
    clearTimeout(timer);
  }
  return got;
}

// ---------------------------------------------------------------------------
// Operations. Each resolves with the outcome it counts under.

type Op = () => Promise<string>;

/** Keyed posts sent so far (a bounded sample), for repeats. */
const SENT_KEYS = 1000;
const sentKeys: {
  user: string;
  room: string;
  key: string;
  id: string;
  at: number;
}[] = [];

/**
 * Rooms of the keyed uploads and Chat streams, each used by one operation
 * at a time (no other posts to them): what they store can be counted.
 */
const freeKeyedRooms = Array.from({ length: 16 }, (_, i) => `keyed-${i}`);
/** The first few mismatches, printed as they come. */
let mismatchesShown = 0;
function mismatch(what: string, detail: string): string {
  if (mismatchesShown++ < 10) console.log(`  ${what}: ${detail}`);
  return what;
}

/** Keyed lines by `u` to `r`, each with a new key (and id, for Chat). */
const keyedLines = (u: string, r: string, n: number, what: string) =>
  Array.from({ length: n }, (_, i) => ({
    ...post(u, r, `${what} ${i}`),
    id: crypto.randomUUID(),
    idempotencyKey: crypto.randomUUID(),
  }));

/**
 * Runs `body` in a keyed room of its own, watched by a subscription from
 * before it; then reads the watch up to a fence sent after `body`: each of
 * the `keys` it returns must be stored exactly once, and nothing else but
 * presence (the room's offset grew by the new messages only).
 */
async function inKeyedRoom(
  body: (r: string, u: string) => Promise<{ outcome: string; keys: string[] }>,
): Promise<string> {
  const r = freeKeyedRooms.pop();
  if (r === undefined) return "no free room";
  const c = grpcClient();
  const watch = c.subscribeMessages({ room: r, user: "watch" });
  const seen: Message[] = [];
  let ended = false;
  watch.on("data", (m: Message) => seen.push(m));
  watch.on("error", () => ended = true);
  watch.on("end", () => ended = true);
  const until = async (done: () => boolean) => {
    for (const end = Date.now() + 3000; !done() && Date.now() < end;) {
      if (ended) return false;
      await sleep(20);
    }
    return done();
  };
  try {
    if (!await until(() => seen.length > 0)) return "watch hung: no welcome";
    const { outcome, keys } = await body(r, user());
    if (!outcome.startsWith("OK")) return outcome;
    const fence = crypto.randomUUID();
    await c.sendMessage({ user: "watch", room: r, content: fence });
    const at = () => seen.findIndex((m) => m.content === fence);
    if (!await until(() => at() > 0)) return "watch hung: no fence";
    const got = seen.slice(1, at());
    const from = Number(seen[0].offset);
    if (got.some((m, i) => Number(m.offset) !== from + 1 + i)) {
      return mismatch("WATCH MISMATCH gap", `${r} after offset ${from}`);
    }
    const stored = got.filter((m) => m.type === MessageType.CHAT)
      .map((m) => m.idempotencyKey);
    const want = new Set(keys);
    if (stored.length !== want.size || !stored.every((k) => want.delete(k))) {
      return mismatch(
        "REPEAT MISMATCH stored",
        `${r}: ${stored.length} stored for ${keys.length} keys (${outcome})`,
      );
    }
    return outcome;
  } catch (err) {
    return grpcCode(err);
  } finally {
    watch.cancel();
    freeKeyedRooms.push(r);
  }
}

/** An upload of `lines`, finished, or cancelled soon after (`cutOff`). */
function keyedUpload(
  lines: MessageInit[],
  cutOff = false,
): Promise<{ code: string; count: number }> {
  let call!: grpc.ClientWritableStream<MessageInit | Uint8Array>;
  const answer = new Promise<{ code: string; count: number }>((resolve) => {
    call = grpcClient().uploadMessages((err, res) =>
      resolve({ code: grpcCode(err), count: res?.messageCount ?? -1 })
    );
  });
  call.on("error", () => {});
  for (const m of lines) call.write(m);
  if (cutOff) sleep(rnd(20)).then(() => call.cancel());
  else call.end();
  return answer;
}

/**
 * A Chat stream of `lines`: the ids of the echoes it read, finished once
 * all are echoed, or cancelled once `cutAfter` are.
 */
async function keyedChat(
  lines: (MessageInit & { id: string })[],
  cutAfter = Infinity,
): Promise<{ code: string; echoes: string[] }> {
  const call = grpcClient().chat();
  call.on("error", () => {});
  const ended = callEnded(call);
  const echoes: string[] = [];
  const cut = cutAfter < lines.length;
  call.on("data", (m: Message) => {
    if (!m.id.startsWith("echo_") || echoes.length >= cutAfter) return;
    echoes.push(m.id);
    if (echoes.length === cutAfter) call.cancel();
  });
  for (const m of lines) call.write(m);
  for (const end = Date.now() + 3000; echoes.length < lines.length;) {
    if (Date.now() > end || (cut && echoes.length >= cutAfter)) break;
    await sleep(10);
  }
  if (!cut) call.end();
  const status = await Promise.race([ended, sleep(3000).then(() => null)]);
  if (status === null) call.cancel();
  return { code: status === null ? "no status" : String(status.code), echoes };
}

const direct: Record<string, Op> = {
  "grpc.send": () =>
    grpcOutcome(
      grpcClient().sendMessage({
        user: user(),
        room: room(),
        content: "hello",
      }),
    ),
  async "grpc.send.keyed"() {
    // A new key, or one sent before (a client retrying): a repeat must get
    // the first's message id (docs/history.md "Idempotent sends").
    const sent = sentKeys.length > 0 && rnd(3) === 0
      ? pick(sentKeys)
      : undefined;
    // Within the core's window (5 min) only.
    const again = sent && Date.now() - sent.at < 4 * 60_000 ? sent : undefined;
    const req = again ?? {
      user: user(),
      room: room(),
      key: crypto.randomUUID(),
      id: "",
      at: Date.now(),
    };
    try {
      const res = await grpcClient().sendMessage({
        user: req.user,
        room: req.room,
        content: "keyed",
        idempotencyKey: req.key,
      });
      if (again === undefined) {
        req.id = res.messageId;
        if (sentKeys.length < SENT_KEYS) sentKeys.push(req);
        else sentKeys[rnd(SENT_KEYS)] = req;
        return "OK";
      }
      return res.messageId === req.id ? "OK repeat" : "REPEAT MISMATCH";
    } catch (err) {
      return grpcCode(err);
    }
  },
  "grpc.upload.keyed"() {
    // An upload sent again with the same keys (its client never saw the
    // answer): as it was, after it was cut off, or with more lines. Each
    // answer counts every line; the room stores each key once.
    return inKeyedRoom(async (r, u) => {
      const mode = rnd(3); // 0: as it was, 1: after a cut, 2: with more
      const lines = keyedLines(u, r, 2 + rnd(6), "keyed upload");
      const first = await keyedUpload(lines, mode === 1);
      if (mode !== 1 && first.code !== "OK") {
        return { outcome: first.code, keys: [] };
      }
      if (mode !== 1 && first.count !== lines.length) {
        const what = mismatch(
          "REPEAT MISMATCH count",
          `${first.count} of ${lines.length}`,
        );
        return { outcome: what, keys: [] };
      }
      const again = mode === 2
        ? [...lines, ...keyedLines(u, r, 1 + rnd(3), "keyed more")]
        : lines;
      const second = await keyedUpload(again);
      const keys = again.map((m) => m.idempotencyKey);
      if (second.code !== "OK") return { outcome: second.code, keys };
      if (second.count !== again.length) {
        const what = mismatch(
          "REPEAT MISMATCH count",
          `${second.count} of ${again.length} sent again`,
        );
        return { outcome: what, keys };
      }
      const outcome = ["OK repeat", "OK repeat after cut", "OK repeat + more"];
      return { outcome: outcome[mode], keys };
    });
  },
  "grpc.chat.keyed"() {
    // Chat lines sent again with their keys and ids on a new stream: all
    // of them, or (the first stream cut after some echoes) the ones not
    // seen echoed. Every line is echoed; the room stores each key once.
    return inKeyedRoom(async (r, u) => {
      const cut = rnd(2) === 0;
      const lines = keyedLines(u, r, 2 + rnd(6), "keyed chat");
      const keys = lines.map((m) => m.idempotencyKey);
      // Cut after an echo: a grpc-js call cancelled right after its writes
      // may never send its RST_STREAM (the core keeps the stream open
      // until the connection goes).
      const first = await keyedChat(
        lines,
        cut ? 1 + rnd(lines.length - 1) : Infinity,
      );
      if (!cut && first.code !== "0") return { outcome: first.code, keys: [] };
      const echoed = new Set(first.echoes);
      const again = cut
        ? lines.filter((m) => !echoed.has(`echo_${m.id}`))
        : lines;
      const want = (ms: typeof lines) => ms.map((m) => `echo_${m.id}`).join();
      if (!cut && first.echoes.join() !== want(lines)) {
        return {
          outcome: mismatch(
            "REPEAT MISMATCH echo",
            `first of ${lines.length}: ${first.echoes.length}`,
          ),
          keys,
        };
      }
      if (again.length === 0) {
        return { outcome: "OK all echoed before cut", keys };
      }
      const second = await keyedChat(again);
      if (second.code !== "0") return { outcome: second.code, keys };
      if (second.echoes.join() !== want(again)) {
        return {
          outcome: mismatch(
            "REPEAT MISMATCH echo",
            `${second.echoes.length} of ${again.length} sent again`,
          ),
          keys,
        };
      }
      return { outcome: cut ? "OK repeat after cut" : "OK repeat", keys };
    });
  },
  "grpc.send.bad": () =>
    grpcOutcome(
      grpcClient().sendMessage({ user: "", room: room(), content: "x" }),
    ),
  async "grpc.subscribe+resume"() {
    const c = grpcClient();
    const r = room(), u = user();
    const first = c.subscribeMessages({ room: r, user: u, history: rnd(5) });
    const a = await readGrpc(first, 2 + rnd(4), 1500);
    first.cancel();
    if (a.err) return `first ${grpcCode(a.err)}`;
    const welcome = a.got[0];
    if (welcome === undefined) return "no welcome";
    const last = a.got.at(-1)!;
    const since = Number(last.offset ?? welcome.offset);
    const again = c.subscribeMessages({
      room: r,
      user: u,
      epoch: welcome.epoch,
      sinceOffset: BigInt(Math.max(0, since - rnd(10))),
    });
    const b = await readGrpc(again, 2 + rnd(6), 1500);
    again.cancel();
    return b.err ? grpcCode(b.err) : "OK";
  },
  async "grpc.subscribe.bad"() {
    const s = grpcClient().subscribeMessages({
      room: room(),
      user: user(),
      sinceOffset: 5n,
    });
    const a = await readGrpc(s, 5, 3000);
    s.cancel();
    return grpcCode(a.err);
  },
  async "grpc.subscribe.deadline"() {
    const s = grpcClient().subscribeMessages(
      { room: room(), user: user() },
      { deadline: deadlineIn(50 + rnd(200)) },
    );
    const a = await readGrpc(s, 1_000_000, 3000);
    s.cancel();
    return grpcCode(a.err);
  },
  async "grpc.upload"() {
    const cancelIt = rnd(4) === 0;
    let call!: grpc.ClientWritableStream<MessageInit | Uint8Array>;
    const answer = new Promise<string>((resolve) => {
      call = grpcClient().uploadMessages((err) => resolve(grpcCode(err)));
    });
    call.on("error", () => {});
    const r = room(), u = user();
    const n = 3 + rnd(15);
    for (let i = 0; i < n; i++) call.write(post(u, r, `upload ${i}`));
    if (cancelIt) {
      await sleep(rnd(20));
      call.cancel();
    } else call.end();
    return (cancelIt ? "cancel " : "") + await answer;
  },
  async "grpc.chat"() {
    const mode = rnd(4); // 0: cancel half-way, 1: deadline, else finish
    const call = grpcClient().chat(
      mode === 1 ? { deadline: deadlineIn(100 + rnd(200)) } : {},
    );
    call.on("error", () => {});
    const ended = callEnded(call);
    const r = room(), u = user();
    const n = 2 + rnd(6);
    for (let i = 0; i < n; i++) call.write(post(u, r, `chat ${i}`));
    const a = await readGrpc(call, mode === 1 ? 1_000_000 : n, 3000);
    if (mode === 0) call.cancel();
    else if (mode !== 1) call.end();
    const status = await Promise.race([ended, sleep(3000).then(() => null)]);
    if (status === null) {
      call.cancel();
      return "no status";
    }
    return `${mode === 0 ? "cancel " : ""}${status.code}` +
      (a.got.length < n && mode > 1 ? " short" : "");
  },
  async "grpc.chat.bad"() {
    const call = grpcClient().chat();
    call.on("error", () => {});
    const ended = callEnded(call);
    call.write(post(user(), room(), "  "));
    const status = await Promise.race([ended, sleep(3000).then(() => null)]);
    if (status === null) {
      call.cancel();
      return "no status";
    }
    call.end();
    return String(status.code);
  },
  "grpc.presence": () =>
    grpcOutcome(grpcClient().listPresence({ room: room() })),
  async "grpc.metrics"() {
    const s = grpcClient().streamMetrics({ intervalSeconds: 1 });
    const a = await readGrpc(s, 3, 3000);
    s.cancel();
    return a.err ? grpcCode(a.err) : "OK";
  },
  async "grpc.metrics.bad"() {
    const s = grpcClient().streamMetrics({ intervalSeconds: -1 });
    const a = await readGrpc(s, 1, 3000);
    s.cancel();
    return grpcCode(a.err);
  },
  async "grpc.fresh-channel"() {
    const c = createChatClient(coreAddr, { "soak.fresh": Math.random() });
    try {
      await c.sendMessage({ user: user(), room: room(), content: "fresh" });
      const s = c.subscribeMessages({ room: room(), user: user() });
      const a = await readGrpc(s, 1, 1500);
      s.cancel();
      return a.err ? grpcCode(a.err) : "OK";
    } catch (err) {
      return grpcCode(err);
    } finally {
      c.close();
    }
  },
};

const web: Record<string, Op> = {
  "grpcweb.send": () =>
    connectOutcome(
      grpcWeb.sendMessage({ user: user(), room: room(), content: "w" }),
    ),
  "grpcweb.send.bad": () =>
    connectOutcome(
      grpcWeb.sendMessage({ user: user(), room: "", content: "w" }),
    ),
  "grpcweb.presence": () =>
    connectOutcome(grpcWeb.listPresence({ room: room() })),
  async "grpcweb.subscribe"() {
    const ctl = new AbortController();
    const a = await readIter(
      grpcWeb.subscribeMessages({ room: room(), user: user(), history: 3 }, {
        signal: ctl.signal,
      }),
      2 + rnd(4),
      ctl,
      1500,
    );
    ctl.abort();
    return a.err ? String(connectCode(a.err)) : "OK";
  },
  async "grpcweb.subscribe.deadline"() {
    const ctl = new AbortController();
    const a = await readIter(
      grpcWeb.subscribeMessages({ room: room(), user: user() }, {
        signal: ctl.signal,
        timeoutMs: 50 + rnd(200),
      }),
      1_000_000,
      ctl,
      3000,
    );
    ctl.abort();
    return String(connectCode(a.err));
  },
  async "grpcweb.malformed"() {
    // A frame that claims more bytes than the body has.
    const res = await edgeFetch(`${edgeUrl}/chat.ChatService/SendMessage`, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
      },
      body: new Uint8Array([0, 0, 0, 0, 99, 1, 2, 3]),
    });
    const body = new Uint8Array(await res.arrayBuffer());
    const text = new TextDecoder().decode(body);
    return /grpc-status: ?(\d+)/.exec(text)?.[1] ??
      res.headers.get("grpc-status") ?? `http ${res.status}`;
  },
  "connect.send": () =>
    connectOutcome(
      connect.sendMessage({ user: user(), room: room(), content: "c" }),
    ),
  "connect.send.bad": () =>
    connectOutcome(
      connect.sendMessage({ user: user(), room: room(), content: " " }),
    ),
  "connect.presence": () =>
    connectOutcome(connect.listPresence({ room: room() })),
  async "connect.subscribe"() {
    const ctl = new AbortController();
    const deadline = rnd(3) === 0;
    const a = await readIter(
      connect.subscribeMessages({ room: room(), user: user(), history: 2 }, {
        signal: ctl.signal,
        timeoutMs: deadline ? 100 + rnd(200) : undefined,
      }),
      deadline ? 1_000_000 : 2 + rnd(4),
      ctl,
      deadline ? 3000 : 1500,
    );
    ctl.abort();
    return (deadline ? "deadline " : "") +
      (a.err ? String(connectCode(a.err)) : "OK");
  },
  async "edge.fresh-http-client"() {
    const hc = Deno.createHttpClient({});
    try {
      const c = createClient(
        ChatService,
        createGrpcWebTransport({
          baseUrl: edgeUrl,
          fetch: disconnectingFetch(hc),
        }),
      );
      await c.sendMessage({ user: user(), room: room(), content: "fresh" });
      return "OK";
    } catch (err) {
      return String(connectCode(err));
    } finally {
      hc.close();
    }
  },
};

const CHAT = "/chat.ChatService/Chat";
const UPLOAD = "/chat.ChatService/UploadMessages";
const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";

/** The call's status, or "no status" if none came in `ms`. */
async function wsStatus(call: WsCall, ms = 3000): Promise<string> {
  const s = await Promise.race([call.status, sleep(ms).then(() => null)]);
  if (s === null) {
    call.cancel();
    return "no status";
  }
  return String(s.code);
}

const encoder = new TextEncoder();

/**
 * A bridge call on a raw TCP socket that is dropped mid-call, without a
 * close frame: what a closed tab or a lost network looks like to the edge.
 */
async function abandonedBridgeCall(path: string, frames: Uint8Array[]) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
  try {
    await conn.write(encoder.encode(
      `GET /ws HTTP/1.1\r\nhost: 127.0.0.1:${edge.port}\r\n` +
        "upgrade: websocket\r\nconnection: Upgrade\r\n" +
        "sec-websocket-version: 13\r\n" +
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ));
    await conn.write(
      wsClientFrame(0x1, encoder.encode(JSON.stringify({ path }))),
    );
    for (const f of frames) await conn.write(wsClientFrame(0x2, f));
    // Read the 101 and something after it (a welcome, an echo), or give up.
    const buf = new Uint8Array(4096);
    let got = 0;
    const until = Date.now() + 500 + rnd(500);
    const timer = setTimeout(() => conn.close(), until - Date.now());
    try {
      while (Date.now() < until && got < 300) {
        const n = await conn.read(buf);
        if (n === null) break;
        got += n;
      }
    } catch {
      /* closed by the timer */
    } finally {
      clearTimeout(timer);
    }
    return got > 0 ? "dropped" : "nothing read";
  } finally {
    try {
      conn.close();
    } catch { /* closed already */ }
  }
}

const bridge: Record<string, Op> = {
  async "ws.chat"() {
    const mode = rnd(3); // 0: cancel half-way, 1: deadline, 2: finish
    const call = openWsCall(wsUrl, {
      path: CHAT,
      timeoutMs: mode === 1 ? 100 + rnd(200) : undefined,
    });
    const r = room(), u = user();
    const n = 2 + rnd(5);
    for (let i = 0; i < n; i++) call.send(postBytes(post(u, r, `ws ${i}`)));
    if (mode === 2) call.closeSend();
    if (mode === 1) await readWs(call, 1_000_000, 3000);
    else await readWs(call, mode === 0 ? 1 : n, 3000);
    if (mode === 0) call.cancel();
    return `${["cancel ", "deadline ", ""][mode]}${await wsStatus(call)}`;
  },
  async "ws.upload"() {
    const call = openWsCall(wsUrl, { path: UPLOAD });
    const r = room(), u = user();
    const n = 3 + rnd(15);
    for (let i = 0; i < n; i++) call.send(postBytes(post(u, r, `wsu ${i}`)));
    const bad = rnd(4) === 0;
    if (bad) call.send(postBytes(post("", r, "no user")));
    call.closeSend();
    await readWs(call, 1, 3000);
    return `${bad ? "bad " : ""}${await wsStatus(call)}`;
  },
  "ws.upload.keyed"() {
    // A bridge upload sent again as it was (the first finished or cut
    // off): its answer counts every line; the room stores each key once.
    return inKeyedRoom(async (r, u) => {
      const lines = keyedLines(u, r, 2 + rnd(6), "keyed ws");
      const keys = lines.map((m) => m.idempotencyKey);
      const upload = async (cut: boolean) => {
        const call = openWsCall(wsUrl, { path: UPLOAD });
        for (const m of lines) call.send(postBytes(m));
        if (cut) {
          await sleep(rnd(20));
          call.cancel();
        } else call.closeSend();
        let count = -1;
        for await (const b of call.messages) {
          count = fromBinary(UploadResponseSchema, b).messageCount;
        }
        return { code: await wsStatus(call), count };
      };
      const cut = rnd(2) === 0;
      const first = await upload(cut);
      if (!cut && first.code !== "0") return { outcome: first.code, keys: [] };
      const second = await upload(false);
      if (second.code !== "0") return { outcome: second.code, keys };
      if (
        (!cut && first.count !== lines.length) || second.count !== lines.length
      ) {
        const what = mismatch(
          "REPEAT MISMATCH count",
          `${first.count}, ${second.count} of ${lines.length}`,
        );
        return { outcome: what, keys };
      }
      return { outcome: cut ? "OK repeat after cut" : "OK repeat", keys };
    });
  },
  async "ws.subscribe"() {
    const mode = rnd(3); // 0: cancel, 1: deadline, 2: bad (no room)
    const call = openWsCall(wsUrl, {
      path: SUBSCRIBE,
      timeoutMs: mode === 1 ? 100 + rnd(200) : undefined,
    });
    call.send(toBinary(
      SubscribeRequestSchema,
      create(SubscribeRequestSchema, {
        room: mode === 2 ? "" : room(),
        user: user(),
        history: 3,
      }),
    ));
    call.closeSend();
    await readWs(call, mode === 0 ? 2 + rnd(3) : 1_000_000, 3000);
    if (mode === 0) call.cancel();
    return `${["cancel ", "deadline ", "bad "][mode]}${await wsStatus(call)}`;
  },
  "ws.subscribe.abandoned"() {
    const req = toBinary(
      SubscribeRequestSchema,
      create(SubscribeRequestSchema, { room: room(), user: user() }),
    );
    return abandonedBridgeCall(SUBSCRIBE, [
      encodeFrame(FLAG_DATA, req),
      encodeFrame(FLAG_END, new Uint8Array(0)),
    ]);
  },
  "ws.chat.abandoned"() {
    const r = room(), u = user();
    return abandonedBridgeCall(CHAT, [
      encodeFrame(FLAG_DATA, postBytes(post(u, r, "a"))),
      encodeFrame(FLAG_DATA, postBytes(post(u, r, "b"))),
    ]);
  },
  "ws.upload.abandoned"() {
    const r = room(), u = user();
    return abandonedBridgeCall(UPLOAD, [
      encodeFrame(FLAG_DATA, postBytes(post(u, r, "a"))),
    ]);
  },
};

const connectBinary = createClient(
  ChatService,
  createConnectTransport({
    baseUrl: edgeUrl,
    fetch: edgeFetch,
    useBinaryFormat: true,
  }),
);
// Bidi through the edge goes over HTTP/2 (edge/http1.ts); the sessions are
// closed before the edge stops (Deno's node:http2 client can abort the
// process on a GOAWAY).
const h2Sessions = new Http2SessionManager(edgeUrl);
const h2Options = {
  baseUrl: edgeUrl,
  httpVersion: "2" as const,
  useBinaryFormat: true,
  sessionManager: h2Sessions,
};
/** connect-node's Connect and gRPC-Web clients of the edge with `options`. */
function nodeClients(
  options:
    & Parameters<typeof createNodeConnectTransport>[0]
    & Parameters<typeof createNodeGrpcWebTransport>[0],
) {
  return [
    createClient(ChatService, createNodeConnectTransport(options)),
    createClient(ChatService, createNodeGrpcWebTransport(options)),
  ] as const;
}
const [connectH2, grpcWebH2] = nodeClients(h2Options);
const gzipOptions = {
  baseUrl: edgeUrl,
  httpVersion: "1.1" as const,
  useBinaryFormat: true,
  sendCompression: compressionGzip,
  acceptCompression: [compressionGzip],
};
const [connectGzip, grpcWebGzip] = nodeClients(gzipOptions);
/** Over the 1 KiB below which the edge sends messages uncompressed. */
const BIG = "compress me ".repeat(200);

/** A BIG message sent and read back (with history) through `client`, gzipped both ways. */
async function bigThroughGzip(client: typeof connectGzip): Promise<string> {
  const r = `big-${rnd(10)}`;
  const ctl = new AbortController();
  const reading = readIter(
    client.subscribeMessages({ room: r, user: user(), history: 2 }, {
      signal: ctl.signal,
    }),
    3,
    ctl,
    2000,
  );
  try {
    await client.sendMessage({ user: user(), room: r, content: BIG });
  } catch (err) {
    ctl.abort();
    return `send ${connectCode(err)}`;
  }
  const a = await reading;
  ctl.abort();
  return a.err ? String(connectCode(a.err)) : "OK";
}
const health = healthClient(coreAddr);
let unknownService = 0;

const subscribeBytes = (r: string, u: string, history = 0) =>
  toBinary(
    SubscribeRequestSchema,
    create(SubscribeRequestSchema, { room: r, user: u, history }),
  );
const sendBytes = (r: string, u: string, content: string) =>
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { room: r, user: u, content }),
  );

/** Reads `chunks` chunks of a response body (or until `ms`), then aborts. */
async function readSome(
  res: Response,
  ctl: AbortController,
  chunks: number,
  ms: number,
): Promise<number> {
  const reader = res.body!.getReader();
  const timer = setTimeout(() => ctl.abort(), ms);
  let bytes = 0;
  try {
    for (let i = 0; i < chunks; i++) {
      const r = await reader.read();
      if (r.done) break;
      bytes += r.value.byteLength;
    }
  } catch {
    /* aborted */
  } finally {
    clearTimeout(timer);
    ctl.abort();
  }
  return bytes;
}

/** gRPC status of a streamed gRPC-Web or Connect body read to its end. */
async function readToEnd(res: Response, connect: boolean): Promise<string> {
  if (connect) {
    const { end } = await readConnectStream(res);
    return end.error === undefined ? "OK" : end.error.code;
  }
  return String((await readGrpcWeb(res)).grpcStatus);
}

/**
 * A subscriber that stops reading while ~250 KB are published to its room,
 * then reads again: its queue fills, it falls behind and catches up from
 * history (`--slow-consumer drop`). `via` "grpc" pauses a grpc-js stream on
 * a channel of its own; "grpcweb" leaves a fetch body unread at the edge.
 */
async function slowConsumer(via: "grpc" | "grpcweb"): Promise<string> {
  const r = `slow-${rnd(5)}`, u = user();
  const line = "x".repeat(1000);
  const publish = () =>
    new Promise<string>((resolve) => {
      const call = grpcClient().uploadMessages((err) => resolve(grpcCode(err)));
      for (let i = 0; i < 250; i++) call.write(post(u, r, line));
      call.end();
    });
  if (via === "grpc") {
    const c = createChatClient(coreAddr, { "soak.slow": Math.random() });
    try {
      const s = c.subscribeMessages({ room: r, user: u });
      const first = await readGrpc(s, 1, 1500);
      s.pause();
      const published = await publish();
      await sleep(500 + rnd(1500));
      s.resume();
      const rest = await readGrpc(s, 250, 3000);
      s.cancel();
      if (first.err || rest.err) return grpcCode(first.err ?? rest.err);
      return published === "OK" ? "OK" : `publish ${published}`;
    } finally {
      c.close();
    }
  }
  const ctl = new AbortController();
  const res = await edgeFetch(`${edgeUrl}/chat.ChatService/SubscribeMessages`, {
    method: "POST",
    headers: {
      "content-type": "application/grpc-web+proto",
      "x-grpc-web": "1",
    },
    body: encodeEnvelope(0, subscribeBytes(r, u)),
    signal: ctl.signal,
  });
  const published = await publish();
  await sleep(500 + rnd(1500));
  await readSome(res, ctl, 50 + rnd(200), 3000);
  return published === "OK" ? "OK" : `publish ${published}`;
}

const more: Record<string, Op> = {
  "connect.binary.send": () =>
    connectOutcome(connectBinary.sendMessage({
      user: user(),
      room: room(),
      content: "b",
    })),
  "gzip.connect": () => bigThroughGzip(connectGzip),
  "gzip.grpcweb": () => bigThroughGzip(grpcWebGzip),
  async "grpcweb.gzip.raw-send"() {
    const res = await edgeFetch(`${edgeUrl}/chat.ChatService/SendMessage`, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "grpc-encoding": "gzip",
        "grpc-accept-encoding": "gzip",
      },
      body: encodeEnvelope(
        FLAG_COMPRESSED,
        new Uint8Array(gzipSync(sendBytes(room(), user(), BIG))),
      ),
    });
    return String((await readGrpcWeb(res)).grpcStatus);
  },
  async "grpcweb.text.subscribe"() {
    const ctl = new AbortController();
    const res = await edgeFetch(
      `${edgeUrl}/chat.ChatService/SubscribeMessages`,
      {
        method: "POST",
        headers: {
          "content-type": "application/grpc-web-text",
          "x-grpc-web": "1",
        },
        body: encodeBase64(
          encodeEnvelope(0, subscribeBytes(room(), user(), 3)),
        ),
        signal: ctl.signal,
      },
    );
    const bytes = await readSome(res, ctl, 1 + rnd(3), 1500);
    return bytes > 0 ? "OK" : "nothing read";
  },
  async "grpcweb.upload"() {
    const r = room(), u = user();
    const n = 2 + rnd(10);
    const res = await edgeFetch(`${edgeUrl}/chat.ChatService/UploadMessages`, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
      },
      body: new Uint8Array(Buffer.concat(
        Array.from(
          { length: n },
          (_, i) => encodeEnvelope(0, postBytes(post(u, r, `gw ${i}`))),
        ),
      )),
    });
    return String((await readGrpcWeb(res)).grpcStatus);
  },
  async "connect.upload"() {
    const r = room(), u = user();
    const res = await edgeFetch(`${edgeUrl}/chat.ChatService/UploadMessages`, {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: connectJsonBody(
        Array.from(
          { length: 2 + rnd(10) },
          (_, i) => ({ user: u, room: r, content: `cu ${i}` }),
        ),
      ),
    });
    return await readToEnd(res, true);
  },
  async "streamed.chat"() {
    // Bidi over a streamed request body, gRPC-Web or Connect: over HTTP/1.1
    // (Deno's fetch) refused UNIMPLEMENTED before the call starts
    // (edge/http1.ts); over HTTP/2 (connect-node) finished, or left after
    // the first echo with the request still open.
    const isConnect = rnd(2) === 0;
    const r = room(), u = user();
    if (rnd(2) === 0) {
      const src = pushBody();
      src.push(
        isConnect
          ? connectJsonBody([{ user: u, room: r, content: "one" }])
          : encodeEnvelope(0, postBytes(post(u, r, "one"))),
      );
      const res = await edgeFetch(`${edgeUrl}/chat.ChatService/Chat`, {
        method: "POST",
        headers: isConnect
          ? { "content-type": "application/connect+json" }
          : { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body: src.body,
        duplex: "half",
      } as RequestInit);
      const text = await res.text();
      src.end();
      const refused = isConnect
        ? /"code":"unimplemented"/.test(text)
        : res.headers.get("grpc-status") === "12";
      return `http1 ${isConnect ? "connect" : "grpcweb"} ${
        refused ? "refused" : "MISMATCH (served)"
      }`;
    }
    const client = isConnect ? connectH2 : grpcWebH2;
    const abort = rnd(2) === 0;
    const ctl = new AbortController();
    let echoed!: () => void;
    const seen = new Promise<void>((resolve) => echoed = resolve);
    async function* lines() {
      yield { user: u, room: r, content: "one" };
      await seen;
      if (!abort) yield { user: u, room: r, content: "two" };
      // Left: the request stays open until the call is cancelled.
      else await new Promise((go) => ctl.signal.addEventListener("abort", go));
    }
    const proto = isConnect ? "connect" : "grpcweb";
    const a = await readIter(
      client.chat(lines(), { signal: ctl.signal }),
      abort ? 1 : 2,
      ctl,
      5000,
      () => echoed(),
    );
    ctl.abort();
    if (a.err) return `h2 ${proto} ${connectCode(a.err)}`;
    const echoes = a.got.filter((m) => m.content.startsWith("Echo: ")).length;
    return `h2 ${proto} ${abort ? "left" : "finished"} ${
      echoes === (abort ? 1 : 2) ? "OK" : "MISMATCH"
    }`;
  },
  async "grpcweb.metrics"() {
    const ctl = new AbortController();
    const a = await readIter(
      grpcWeb.streamMetrics(
        create(MetricsRequestSchema, { intervalSeconds: 1 }),
        {
          signal: ctl.signal,
        },
      ),
      1,
      ctl,
      3000,
    );
    ctl.abort();
    return a.err ? String(connectCode(a.err)) : "OK";
  },
  async "edge.page+healthz"() {
    const paths = ["/", "/app.js", "/app.css", "/healthz", "/favicon.svg"];
    const res = await edgeFetch(`${edgeUrl}${pick(paths)}`, {
      headers: { "accept-encoding": pick(["br, gzip", "gzip", "identity"]) },
    });
    await res.arrayBuffer();
    return String(res.status);
  },
  "grpc.health"() {
    const kind = rnd(3);
    if (kind === 0) {
      return new Promise<string>((resolve) =>
        health.check(
          { service: pick(["", "chat.ChatService", "no.Such"]) },
          (err) => resolve(grpcCode(err)),
        )
      );
    }
    const deadline = kind === 1;
    const s = (health as unknown as {
      watch(
        req: { service: string },
        opts: grpc.CallOptions,
      ): grpc.ClientReadableStream<unknown>;
    }).watch(
      { service: pick(["", "chat.ChatService"]) },
      deadline ? { deadline: deadlineIn(100 + rnd(200)) } : {},
    );
    return readGrpc(s, deadline ? 1_000_000 : 1, 3000).then((a) => {
      s.cancel();
      return (deadline ? "watch deadline " : "watch ") + grpcCode(a.err);
    });
  },
  async "grpc.health.unknown-name"() {
    // A Watch of a service the core does not serve: SERVICE_UNKNOWN, and
    // the stream stays open until the client goes. Each name is new.
    const s = health.watch({ service: `svc-${unknownService++}` });
    const a = await readGrpc(s, 1, 3000);
    s.cancel();
    return a.got.length === 1 ? "OK" : `watch ${grpcCode(a.err)}`;
  },
  async "grpc.reflection"() {
    const raw = grpcClient().raw;
    const stream = raw.makeBidiStreamRequest(
      pick([
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      ]),
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
    );
    stream.on("error", () => {});
    const ended = callEnded(stream);
    // list_services "*" (field 7), then file_containing_symbol (field 4).
    stream.write(new Uint8Array([0x3a, 1, 0x2a]));
    const symbol = new TextEncoder().encode("chat.ChatService");
    stream.write(new Uint8Array([0x22, symbol.length, ...symbol]));
    const a = await readGrpc(stream, 2, 3000);
    stream.end();
    const st = await Promise.race([ended, sleep(3000).then(() => null)]);
    if (st === null) {
      stream.cancel();
      return "no status";
    }
    return a.got.length === 2 ? String(st.code) : `short ${st.code}`;
  },
  "grpc.slow-consumer"() {
    return slowConsumer("grpc");
  },
  "grpcweb.slow-consumer"() {
    return slowConsumer("grpcweb");
  },
};

/**
 * Operations that publish ~250 KB run a tenth as often as the others; the
 * keyed streams' a third (their keys stay in the core for its window).
 */
const WEIGHTS: Record<string, number> = {
  "grpc.slow-consumer": 0.1,
  "grpcweb.slow-consumer": 0.1,
  "grpc.upload.keyed": 0.3,
  "grpc.chat.keyed": 0.3,
  "ws.upload.keyed": 0.3,
};

const opFilter = new RegExp(values.ops);
const allOps: [string, Op][] = [
  ...Object.entries(direct),
  ...Object.entries(web),
  ...Object.entries(bridge),
  ...Object.entries(more),
].filter(([name]) => opFilter.test(name));
const totalWeight = allOps.reduce((a, [n]) => a + (WEIGHTS[n] ?? 1), 0);
/** An operation, each as likely as its weight. */
function pickOp(): [string, Op] {
  let x = Math.random() * totalWeight;
  for (const entry of allOps) {
    x -= WEIGHTS[entry[0]] ?? 1;
    if (x < 0) return entry;
  }
  return allOps[allOps.length - 1];
}
/** Outcomes that say something is wrong whatever the operation. */
const BAD_OUTCOME = /no status|hung|threw|MISMATCH|(^| )(2|13|14)( |$)/;

// ---------------------------------------------------------------------------
// The load.

let stopping = false;
let nextSlot = performance.now();
async function pace() {
  const now = performance.now();
  const slot = Math.max(now, nextSlot);
  nextSlot = slot + 1000 / rate;
  if (slot > now) await sleep(slot - now);
}

async function worker() {
  while (!stopping) {
    await pace();
    if (stopping) break;
    const [name, op] = pickOp();
    let outcome: string;
    let guard: ReturnType<typeof setTimeout> | undefined;
    try {
      outcome = await Promise.race([
        op(),
        new Promise<string>((r) => guard = setTimeout(() => r("hung"), 15_000)),
      ]);
    } catch (err) {
      outcome = `threw ${(err as Error).name}: ${(err as Error).message}`;
    } finally {
      clearTimeout(guard);
    }
    ops++;
    count(`${name} ${outcome}`);
    if (BAD_OUTCOME.test(outcome)) surprise(`${name} ${outcome}`);
  }
}

/** One long-lived subscription after another, each 5-60 s. */
async function subscriber(i: number) {
  while (!stopping) {
    const lifetime = 5000 + rnd(55_000);
    const r = room(), u = `sub${i}`;
    const kind = rnd(4);
    const stopAt = Date.now() + lifetime;
    const waitLife = async (ctl: { abort(): void }) => {
      while (!stopping && Date.now() < stopAt) await sleep(250);
      ctl.abort();
    };
    let outcome = "OK";
    if (kind === 0) {
      const s = grpcClient().subscribeMessages({ room: r, user: u });
      const done = readGrpc(s, Number.MAX_SAFE_INTEGER, lifetime + 120_000);
      await Promise.race([waitLife({ abort: () => s.cancel() }), done]);
      s.cancel();
      const a = await done;
      if (a.err && grpcCode(a.err) !== "1") outcome = grpcCode(a.err);
    } else if (kind === 3) {
      const call = openWsCall(wsUrl, { path: SUBSCRIBE });
      call.send(toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { room: r, user: u }),
      ));
      call.closeSend();
      const done = readWs(call, Number.MAX_SAFE_INTEGER, lifetime + 120_000);
      await Promise.race([waitLife({ abort: () => call.cancel() }), done]);
      call.cancel();
      const s = await call.status;
      if (s.code !== 1) outcome = String(s.code);
    } else {
      const ctl = new AbortController();
      const client = kind === 1 ? grpcWeb : connect;
      const done = readIter(
        client.subscribeMessages({ room: r, user: u }, { signal: ctl.signal }),
        Number.MAX_SAFE_INTEGER,
        ctl,
        lifetime + 120_000,
      );
      await Promise.race([waitLife(ctl), done]);
      ctl.abort();
      const a = await done;
      if (a.err && connectCode(a.err) !== Code.Canceled) {
        outcome = String(connectCode(a.err));
      }
    }
    const name = `long-sub.${["grpc", "grpcweb", "connect", "ws"][kind]}`;
    count(`${name} ${outcome}`);
    if (outcome !== "OK") surprise(`${name} ${outcome}`);
  }
}

// ---------------------------------------------------------------------------
// Sampling.

interface Sample {
  t: number;
  ops: number;
  coreRssMb: number;
  /** Live heap after a forced collection (bench/soak_entry.ts). */
  coreHeapMb: number;
  /** V8's heap as it stands (prom-client's nodejs_heap_size_total_bytes). */
  coreHeapTotalMb: number;
  coreExternalMb: number;
  coreStreams: number;
  coreSubscribers: number;
  coreRooms: number;
  coreConnections: number;
  coreQueued: number;
  edgeRssMb: number;
  edgeHeapMb: number;
  edgeExternalMb: number;
  edgeCalls: number;
  /** Open file descriptors of the edge process (sockets among them). */
  edgeFds: number;
  edgeWebsockets: number;
  edgeUpstreams: number;
  loadRssMb: number;
  /** CPU used since the previous sample, % of one core. */
  coreCpu: number;
  edgeCpu: number;
  loadCpu: number;
}

/** Sum of every series of `name` (with any labels) in a Prometheus text. */
function metric(text: string, name: string): number {
  let sum = 0, seen = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    seen = true;
  }
  return seen ? sum : NaN;
}

async function scrape(url: string): Promise<string> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    return await res.text();
  } catch {
    return "";
  }
}

const started = Date.now();
/** This process's CPU alone (its group may hold the servers: groupPids). */
function ownCpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / clockTicks();
}
const cpuOf = () => ({
  at: performance.now(),
  core: groupCpuSeconds(core.pid),
  edge: groupCpuSeconds(edge.pid),
  load: ownCpuSeconds(),
});
let lastCpu = cpuOf();
async function sample(): Promise<Sample> {
  const cpu = cpuOf();
  const pct = (k: "core" | "edge" | "load") =>
    cpu.at === lastCpu.at
      ? 0
      : 100 * (cpu[k] - lastCpu[k]) / ((cpu.at - lastCpu.at) / 1000);
  const cpuPct = { core: pct("core"), edge: pct("edge"), load: pct("load") };
  lastCpu = cpu;
  const [c, e] = await Promise.all([
    scrape(`http://127.0.0.1:${metricsPort}/metrics`),
    scrape(`${edgeUrl}/metrics`),
  ]);
  const coreMem = liveMemory("core"), edgeMem = liveMemory("edge");
  return {
    t: (Date.now() - started) / 1000,
    ops,
    coreRssMb: groupMemoryKb(core.pid).rssKb / 1024,
    coreHeapMb: coreMem.heapMb,
    coreHeapTotalMb: metric(c, "nodejs_heap_size_total_bytes") / MB,
    coreExternalMb: coreMem.externalMb,
    coreStreams: metric(c, "chat_active_streams"),
    coreSubscribers: metric(c, "chat_subscribers"),
    coreRooms: metric(c, "chat_rooms"),
    coreConnections: metric(c, "chat_connections"),
    coreQueued: metric(c, "chat_queued_messages"),
    edgeRssMb: groupMemoryKb(edge.pid).rssKb / 1024,
    edgeHeapMb: edgeMem.heapMb,
    edgeExternalMb: edgeMem.externalMb,
    edgeCalls: metric(e, "chat_edge_active_calls"),
    edgeFds: openFds(edge.pid),
    edgeWebsockets: metric(e, "chat_edge_websockets"),
    edgeUpstreams: metric(e, "chat_edge_upstream_connections"),
    loadRssMb: Deno.memoryUsage().rss / MB,
    coreCpu: cpuPct.core,
    edgeCpu: cpuPct.edge,
    loadCpu: cpuPct.load,
  };
}

const HEAD = "    t      ops | core   rss  heap total  ext strm  subs rooms " +
  "conn | edge   rss  heap  ext calls fds  ws up | load rss | cpu% core edge load";
function row(s: Sample): string {
  const f = (x: number, w: number, d = 1) => x.toFixed(d).padStart(w);
  return [
    `${f(s.t, 5, 0)} ${f(s.ops, 8, 0)} |`,
    `${f(s.coreRssMb, 10)} ${f(s.coreHeapMb, 5)} ${f(s.coreHeapTotalMb, 5)}`,
    `${f(s.coreExternalMb, 4)} ${f(s.coreStreams, 4, 0)}`,
    `${f(s.coreSubscribers, 5, 0)} ${f(s.coreRooms, 5, 0)}`,
    `${f(s.coreConnections, 4, 0)} |`,
    `${f(s.edgeRssMb, 10)} ${f(s.edgeHeapMb, 5)} ${f(s.edgeExternalMb, 4)}`,
    `${f(s.edgeCalls, 5, 0)} ${f(s.edgeFds, 4, 0)} ${
      f(s.edgeWebsockets, 3, 0)
    }`,
    `${f(s.edgeUpstreams, 2, 0)} | ${f(s.loadRssMb, 8)} |`,
    `     ${f(s.coreCpu, 4, 0)} ${f(s.edgeCpu, 4, 0)} ${f(s.loadCpu, 4, 0)}`,
  ].join(" ");
}

/** Open file descriptors of `pid`; NaN if it cannot be read. */
function openFds(pid: number): number {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  } catch {
    return NaN;
  }
}

/** TCP sockets on `port` (either end) by state, from `ss`. */
function socketStates(port: number): string {
  try {
    const out = new Deno.Command("ss", {
      args: ["-tanH", `( sport = :${port} )`],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const states = new Map<string, number>();
    for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
      const state = line.trim().split(/\s+/)[0];
      if (state) states.set(state, (states.get(state) ?? 0) + 1);
    }
    return [...states].map(([k, v]) => `${k} ${v}`).join(", ");
  } catch {
    return "(ss not available)";
  }
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

// ---------------------------------------------------------------------------
// The run.

const samples: Sample[] = [];
const take = async () => {
  const s = await sample();
  samples.push(s);
  console.log(row(s));
  if (!core.alive() || !edge.alive()) {
    console.log(`a process died: core ${core.alive()}, edge ${edge.alive()}`);
  }
  return s;
};
console.log(
  `load: ${values.minutes} min, ${rate} ops/s over ${values.workers} ` +
    `workers, ${values.subscribers} long-lived subscribers, ${roomCount} rooms, ` +
    `history ${values["history-size"]} per room; warm-up ${warmupMs / 1000} s`,
);
// The first live-heap figures of both (bench/soak_entry.ts, every 5 s).
for (
  const until = Date.now() + 10_000;
  Date.now() < until &&
  (isNaN(liveMemory("core").heapMb) || isNaN(liveMemory("edge").heapMb));
) await sleep(200);
console.log(HEAD);
const first = await take();
const workers = [
  ...Array.from({ length: Number(values.workers) }, () => worker()),
  ...Array.from(
    { length: Number(values.subscribers) },
    (_, i) => subscriber(i),
  ),
];
const sampler = (async () => {
  while (Date.now() - started < durationMs) {
    await sleep(Math.min(sampleMs, durationMs - (Date.now() - started)));
    await take();
  }
})();
await sampler;
const endOfLoad = samples.at(-1)!;
stopping = true;
await Promise.all(workers);
for (const c of channels) c.close();
health.close();
httpClient.close();
h2Sessions.abort();
console.log(
  `load stopped after ${ops} operations; idle ${values["idle-seconds"]} s`,
);
const idleMs = Number(values["idle-seconds"]) * 1000;
for (let waited = 0; waited < idleMs; waited += 5000) {
  await sleep(Math.min(5000, idleMs - waited));
  await take();
}
const idle = samples.at(-1)!;

console.log("\noutcomes (operation outcome: count; gRPC codes as numbers):");
for (const [k, v] of [...counts].sort()) console.log(`  ${k}: ${v}`);
console.log(
  surprises.size === 0
    ? "\nno unexpected outcome"
    : `\nunexpected outcomes:\n${
      [...surprises].map(([k, v]) => `  ${k}: ${v}`).join("\n")
    }`,
);

if (errorMessages.size > 0) {
  console.log("\nmessages of unexpected errors (the first of each):");
  for (const m of errorMessages.values()) console.log(`  ${m}`);
}

const warm = samples.filter((s) =>
  s.t * 1000 >= warmupMs && s.t <= endOfLoad.t
);
const warmFirst = warm[0] ?? endOfLoad;
console.log(
  "\n          t      ops | core rss  heap   ext | edge rss  heap   ext",
);
for (
  const [label, s] of [
    ["start", first],
    ["warm", warmFirst],
    ["end", endOfLoad],
    ["idle", idle],
  ] as const
) {
  const f = (x: number, w: number) => x.toFixed(1).padStart(w);
  console.log(
    `${label.padEnd(6)} ${s.t.toFixed(0).padStart(5)} ${
      String(s.ops).padStart(8)
    } | ${f(s.coreRssMb, 8)} ${f(s.coreHeapMb, 5)} ${
      f(s.coreExternalMb, 5)
    } | ${f(s.edgeRssMb, 8)} ${f(s.edgeHeapMb, 5)} ${f(s.edgeExternalMb, 5)}`,
  );
}
if (warm.length >= 3) {
  const x = warm.map((s) => s.ops / 1e5);
  const per = (pick: (s: Sample) => number) =>
    slope(x, warm.map(pick)).toFixed(2);
  console.log(
    `\nslope after warm-up (${warm.length} samples, MB per 100k operations):` +
      ` core rss ${per((s) => s.coreRssMb)}, heap ${
        per((s) => s.coreHeapMb)
      }, external ${per((s) => s.coreExternalMb)}; edge rss ${
        per((s) => s.edgeRssMb)
      }, heap ${per((s) => s.edgeHeapMb)}, external ${
        per((s) => s.edgeExternalMb)
      }`,
  );
}
const gauges: [string, number][] = [
  ["core chat_active_streams", idle.coreStreams],
  ["core chat_subscribers", idle.coreSubscribers],
  ["core chat_rooms", idle.coreRooms],
  ["core chat_queued_messages", idle.coreQueued],
  ["edge chat_edge_active_calls", idle.edgeCalls],
  ["edge chat_edge_websockets", idle.edgeWebsockets],
];
console.log("\ngauges after the idle wait (each must be 0):");
for (const [k, v] of gauges) {
  console.log(`  ${k}: ${v}${v === 0 ? "" : "   <-- not back to 0"}`);
}
console.log(
  `  (core chat_connections: ${idle.coreConnections}, the edge's own ` +
    `upstream connections: ${idle.edgeUpstreams})`,
);
console.log(
  `  (edge: ${first.edgeFds} open file descriptors at the start, ` +
    `${idle.edgeFds} now; its port's TCP sockets: ${socketStates(edge.port)})`,
);
const clean = gauges.every(([, v]) => v === 0);
if (idle.coreSubscribers > 0) {
  // Who is still subscribed, and where (--presence): names the operation.
  const c = createChatClient(coreAddr);
  const all = [
    ...rooms,
    ...Array.from({ length: 10 }, (_, i) => `big-${i}`),
    ...Array.from({ length: 5 }, (_, i) => `slow-${i}`),
  ];
  for (const r of all) {
    const p = await c.listPresence({ room: r }).catch(() => undefined);
    for (const e of p?.users ?? []) {
      console.log(`  still in ${r}: ${e.user} (${e.connections})`);
    }
  }
  c.close();
}
const finalCore = await scrape(`http://127.0.0.1:${metricsPort}/metrics`);
console.log(
  `  (core counters: ${
    [
      "chat_messages_published_total",
      "chat_deliveries_total",
      "chat_subscribers_fell_behind_total",
      "chat_dropped_messages_total",
      "chat_slow_consumer_disconnects_total",
      "chat_idempotency_keys",
      "grpc_server_started_total",
    ].map((n) => `${n} ${metric(finalCore, n)}`).join(", ")
  })`,
);

await edge.stop();
await core.stop();
if (values["keep-logs"]) console.log(`logs kept in ${tmp}`);
else await Deno.remove(tmp, { recursive: true });
Deno.exit(clean && surprises.size === 0 ? 0 : 1);
