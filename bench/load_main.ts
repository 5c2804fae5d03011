/**
 * Entry of one load run: `deno run -A bench/load_main.ts --scenario S
 * --addr host:port [...]`, printing exactly one JSON line.
 *
 * `bench/main.ts` starts one of these per case, pinned to the load CPU, so
 * each case gets a fresh grpc-js and a clean heap, and the load's CPU time is
 * its own. It can also be run by hand against any server, like chatload.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatError } from "../client/format.ts";
import { selfCpuSeconds } from "./stats.ts";
import { runUnary } from "./load/unary.ts";
import { runFanout } from "./load/fanout.ts";
import { runUpload } from "./load/upload.ts";
import { runChat } from "./load/chat.ts";
import { runIdleSubscribers } from "./load/idle_subscribers.ts";
import { runGrpcWebStream, runGrpcWebUnary } from "./load/grpc_web.ts";

const s = { type: "string" } as const;
const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    scenario: s,
    addr: s,
    "pub-addr": s,
    edge: s,
    c: s,
    connect: s,
    conns: s,
    d: s,
    warmup: s,
    drain: s,
    n: s,
    subs: s,
    rooms: s,
    pubc: s,
    "server-pgid": s,
    "settle-ms": s,
    label: s,
    token: s,
  },
  strict: true,
});
const num = (name: keyof typeof v, fallback: number) => {
  const raw = v[name];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`load: --${name} must be a number >= 0, got "${raw}"`);
    Deno.exit(2);
  }
  return n;
};
const addr = v.addr ?? "127.0.0.1:50051";
const common = { addr, durationS: num("d", 5), warmupS: num("warmup", 1) };

const wall0 = performance.now(), cpu0 = selfCpuSeconds();
let result: Record<string, unknown>;
try {
  switch (v.scenario) {
    case "unary":
      result = await runUnary({
        ...common,
        c: num("c", 16),
        conns: num("conns", 1),
      });
      break;
    case "fanout":
      result = await runFanout({
        ...common,
        pubAddr: v["pub-addr"],
        subs: num("subs", 10),
        pubc: num("pubc", 1),
        conns: num("conns", 1),
        drainS: num("drain", 2),
      });
      break;
    case "upload":
      result = await runUpload({ addr, n: num("n", 10_000) });
      break;
    case "chat":
      result = await runChat({ addr, n: num("n", 10_000) });
      break;
    case "memory":
      result = await runIdleSubscribers({
        addr,
        subs: num("subs", 10_000),
        conns: num("conns", 20),
        rooms: num("rooms", 100),
        token: v.token,
        serverPgid: num("server-pgid", 0),
        settleMs: num("settle-ms", 1000),
      });
      break;
    case "web_unary":
      result = await runGrpcWebUnary({
        ...common,
        edge: v.edge ?? "",
        c: num("c", 16),
        connect: num("connect", 0) === 1,
      });
      break;
    case "web_stream":
      result = await runGrpcWebStream({
        ...common,
        edge: v.edge ?? "",
        subs: num("subs", 10),
      });
      break;
    default:
      console.error(`load: unknown --scenario "${v.scenario}"`);
      Deno.exit(2);
  }
} catch (err) {
  result = { scenario: v.scenario, ok: false, error: formatError(err) };
}
result.client_cpu_s = Math.round((selfCpuSeconds() - cpu0) * 100) / 100;
result.wall_s = Math.round(performance.now() - wall0) / 1000;
if (v.label) result.label = v.label;
result.addr = addr;
console.log(JSON.stringify(result));
Deno.exit(result.ok ? 0 : 1);
