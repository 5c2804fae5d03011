/**
 * The floor of a streamed response on `Deno.serve`: CPU per message when a
 * server does nothing but enqueue a small chunk to N open HTTP/1.1 streaming
 * responses, one message per chunk or several per chunk. The edge can not
 * cost less per streamed message than this, whatever it does on top.
 *
 *   taskset -c 0 deno run -A bench/ceiling/serve_stream.ts [--clients 10]
 *
 * Readers are `curl -sN` processes (pinned to CPU 1 when `taskset` exists).
 * Prints one line per batch size: µs of this process's CPU per message.
 * A measuring tool only (see BENCHMARKS.md); not part of the product.
 *
 * @module
 */
import { parseArgs } from "node:util";

const args = parseArgs({
  args: Deno.args,
  options: {
    clients: { type: "string", default: "10" },
    seconds: { type: "string", default: "4" },
    // Message ticks per second; each tick writes to every client.
    ticks: { type: "string", default: "1500" },
  },
});
const clients = Number(args.values.clients);
const seconds = Number(args.values.seconds);
const ticksPerSecond = Number(args.values.ticks);
const MESSAGE = new Uint8Array(80).fill(0x41);

const streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen() {} },
  () => {
    let own!: ReadableStreamDefaultController<Uint8Array>;
    return new Response(
      new ReadableStream<Uint8Array>({
        start(c) {
          own = c;
          streams.add(c);
        },
        cancel() {
          streams.delete(own);
        },
      }),
    );
  },
);

function cpuTicks(): number {
  const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]
    .split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

async function hasTaskset(): Promise<boolean> {
  try {
    const out = await new Deno.Command("taskset", { args: ["-V"] }).output();
    return out.success;
  } catch {
    return false;
  }
}

const url = `http://127.0.0.1:${server.addr.port}/`;
const pin = await hasTaskset();
const readers = Array.from(
  { length: clients },
  () =>
    new Deno.Command(pin ? "taskset" : "curl", {
      args: pin ? ["-c", "1", "curl", "-sN", url] : ["-sN", url],
      stdout: "null",
      stderr: "null",
    }).spawn(),
);
while (streams.size < clients) await new Promise((r) => setTimeout(r, 20));

const CLK_TCK = 100;
for (const perChunk of [1, 2, 4]) {
  const chunk = new Uint8Array(MESSAGE.length * perChunk).fill(0x41);
  let messages = 0;
  const t0 = cpuTicks();
  const start = performance.now();
  let tick = 0;
  while (performance.now() - start < seconds * 1000) {
    for (const s of streams) s.enqueue(chunk.slice());
    messages += perChunk * streams.size;
    tick++;
    // Pace the ticks like a publisher would, yielding to the event loop.
    const due = start + (tick * 1000) / ticksPerSecond;
    const wait = due - performance.now();
    await new Promise((r) => setTimeout(r, Math.max(0, wait)));
  }
  const cpuUs = ((cpuTicks() - t0) / CLK_TCK) * 1e6;
  console.log(
    `${perChunk} message(s) per chunk: ${(cpuUs / messages).toFixed(1)} µs ` +
      `CPU per message (${messages} messages to ${clients} clients)`,
  );
}

for (const r of readers) r.kill();
await Promise.all(readers.map((r) => r.status));
await server.shutdown();
