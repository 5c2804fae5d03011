/**
 * Does a second edge process add capacity? Streamed messages per second
 * through the edge with `--procs 1` and `--procs 2`, rounds interleaved
 * (issue 15: "more than one core for the edge").
 *
 * `--mode stream` (the default), per round: a core (`--store memory`), an
 * edge with N processes on one
 * port, `--subs` gRPC-Web subscribers over HTTP/1.1 (bench/webfan, a Go
 * reader: cheaper per message than the edge, so the edge is what is
 * measured), and h2load publishing SendMessage to the core directly as fast
 * as `-m` streams allow. Nothing is pinned: N processes need the cores.
 * The edge's CPU is its process group's with the detached --procs
 * children (bench/procfs.ts), from /proc.
 *
 * `--mode unary`: gRPC-Web unary SendMessage calls through the edge from
 * `h2load --h1 -c 32` for `--seconds`; calls/s instead of deliveries/s.
 * Each call costs the edge tens of µs and nothing batches them, so this is
 * the case where one edge process can be the limit.
 *
 * ```sh
 * deno run -A bench/edge_procs.ts [--rounds 3] [--subs 100] [--seconds 5]
 * ```
 *
 * Needs `go` (Debian's golang, to build bench/webfan once) and `h2load`
 * (nghttp2-client). A measuring tool only, not part of the product.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "../gen/chat_pb.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { startServer } from "./procs.ts";
import { groupCpuSeconds } from "./procfs.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    subs: { type: "string", default: "100" },
    seconds: { type: "string", default: "5" },
    streams: { type: "string", default: "4" },
    procs: { type: "string", default: "1,2" },
    mode: { type: "string", default: "stream" },
  },
});
const root = new URL("..", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "edge_procs" });
const webfan = `${tmp}/webfan`;
const built = await new Deno.Command("go", {
  args: ["build", "-o", webfan, "./bench/webfan"],
  cwd: root,
  env: {
    GO111MODULE: "off",
    GOPATH: `${tmp}/gopath`,
    GOCACHE: `${tmp}/gocache`,
    GOFLAGS: "",
  },
}).output();
if (!built.success) {
  console.error(new TextDecoder().decode(built.stderr));
  Deno.exit(2);
}
const room = "edge-procs";
const pub = `${tmp}/pub.bin`;
Deno.writeFileSync(
  pub,
  encodeEnvelope(
    0,
    toBinary(
      SendMessageRequestSchema,
      create(SendMessageRequestSchema, {
        user: "publisher",
        content: "a streamed message of about sixty bytes, a usual chat line",
        room,
      }),
    ),
  ),
);

async function round(procs: number) {
  const core = await startServer(
    `deno run -A ${root}server/main.ts --port {port} --store memory`,
    { logPath: `${tmp}/core.log` },
  );
  const edge = await startServer(
    // The flags edge/main.ts gives its --procs children: 1 and N alike.
    `deno run -A --unstable-net ${root}edge/main.ts --port {port} ` +
      `--upstream http://127.0.0.1:${core.port} --procs ${procs} --log-format off`,
    { logPath: `${tmp}/edge.log` },
  );
  const seconds = Number(values.seconds);
  try {
    if (values.mode === "unary") return await unary(procs, edge.pid, edge.port);
    const readers = new Deno.Command(webfan, {
      args: [
        "-url",
        `http://127.0.0.1:${edge.port}`,
        "-subs",
        values.subs,
        "-room",
        room,
        "-warmup",
        "1.5",
        "-d",
        String(seconds),
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const err = readers.stderr.getReader();
    let said = "";
    while (!said.includes("ready")) {
      const { value, done } = await err.read();
      if (done) throw new Error(`webfan: ${said}`);
      said += new TextDecoder().decode(value);
    }
    err.releaseLock();
    readers.stderr.cancel();
    const publisher = new Deno.Command("h2load", {
      args: [
        "-c",
        "1",
        "-m",
        values.streams,
        "-D",
        String(seconds + 3),
        "-d",
        pub,
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        `http://127.0.0.1:${core.port}/chat.ChatService/SendMessage`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    // The readers measure from 1.5 s after "ready"; so does the CPU.
    await new Promise((r) => setTimeout(r, 1500));
    const edgeCpu0 = groupCpuSeconds(edge.pid),
      coreCpu0 = groupCpuSeconds(core.pid);
    const out = await readers.output();
    const edgeCpu = groupCpuSeconds(edge.pid) - edgeCpu0;
    const coreCpu = groupCpuSeconds(core.pid) - coreCpu0;
    publisher.kill("SIGINT");
    await publisher.status;
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    return {
      procs,
      delivered_per_s: Math.round(r.delivered_per_s),
      failed: r.failed,
      edge_cpu_s: +edgeCpu.toFixed(2),
      edge_us_per_msg: +(edgeCpu * 1e6 / r.delivered).toFixed(2),
      core_cpu_s: +coreCpu.toFixed(2),
    };
  } finally {
    await edge.stop();
    await core.stop();
  }
}

/** gRPC-Web unary calls through the edge for `--seconds`. */
async function unary(procs: number, pid: number, port: number) {
  const web = `${tmp}/web.bin`;
  Deno.writeFileSync(web, Deno.readFileSync(pub));
  const h2load = (seconds: number) =>
    new Deno.Command("h2load", {
      args: [
        "--h1",
        "-c",
        "32",
        "-D",
        String(seconds),
        "-d",
        web,
        "-H",
        "content-type: application/grpc-web+proto",
        "-H",
        "x-grpc-web: 1",
        `http://127.0.0.1:${port}/chat.ChatService/SendMessage`,
      ],
      stdout: "piped",
      stderr: "null",
    }).output();
  await h2load(1); // warm-up
  const cpu0 = groupCpuSeconds(pid);
  const out = new TextDecoder().decode(
    (await h2load(Number(values.seconds))).stdout,
  );
  const cpu = groupCpuSeconds(pid) - cpu0;
  const done = Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0);
  const perS = Number(
    /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0,
  );
  return {
    procs,
    delivered_per_s: Math.round(perS),
    failed: Number(/(\d+) failed/.exec(out)?.[1] ?? 0),
    edge_cpu_s: +cpu.toFixed(2),
    edge_us_per_msg: +(cpu * 1e6 / Math.max(1, done)).toFixed(2),
    core_cpu_s: 0,
  };
}

const counts = values.procs.split(",").map(Number);
const results: Record<number, number[]> = {};
for (let i = 0; i < Number(values.rounds); i++) {
  for (const n of counts) {
    const r = await round(n);
    console.log(JSON.stringify(r));
    (results[n] ??= []).push(r.delivered_per_s);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const n of counts) {
  console.log(
    `procs ${n}: median ${median(results[n])} deliveries/s ` +
      `(${results[n].join(", ")}), ${
        (median(results[n]) / median(results[counts[0]])).toFixed(2)
      }x procs ${counts[0]}`,
  );
}
await Deno.remove(tmp, { recursive: true });
