/**
 * Where a running Deno process allocates: V8's sampling heap profiler over
 * the inspector protocol, counting every sampled allocation (also those the
 * next scavenge frees), summed by function. `--cpu-prof` says where time
 * goes; this says which code makes the garbage that the scavenges and their
 * pauses pay for (docs/perf-log.md, "unary allocations").
 *
 * ```sh
 * deno run -A --inspect=127.0.0.1:9229 server/main.ts --port 50051 &
 * deno run -A bench/heap_sample.ts --inspect 127.0.0.1:9229 --seconds 5 \
 *   --calls 200000 [--top 30]
 * # ... while the load runs (started after "sampling" is printed)
 * ```
 *
 * `--calls` (the operations the load made while sampling) turns bytes into
 * bytes per operation. Read the shares, not the total: for unary calls the
 * sampled total stayed ~2.3 KB per call while `--v8-flags=--trace-gc` (the
 * sum of what each scavenge found) went from 7.3 to 3.8 KB. A measuring tool
 * only, not part of the product.
 *
 * @module
 */
import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface SampleNode {
  callFrame: CallFrame;
  selfSize: number;
  children: SampleNode[];
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    inspect: { type: "string", default: "127.0.0.1:9229" },
    seconds: { type: "string", default: "5" },
    calls: { type: "string", default: "0" },
    top: { type: "string", default: "30" },
    interval: { type: "string", default: "256" },
    // Only what is still in the heap at the end (survivors of scavenges,
    // promoted garbage not yet collected), not every allocation.
    survivors: { type: "boolean", default: false },
    // What outlived a scavenge: alive at the end or freed by a mark-compact
    // (promoted garbage), without what scavenges freed.
    promoted: { type: "boolean", default: false },
  },
});

const targets = await (await fetch(`http://${values.inspect}/json/list`))
  .json() as { webSocketDebuggerUrl: string }[];
const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onerror = reject;
});
let nextId = 1;
const waiting = new Map<number, (result: unknown) => void>();
ws.onmessage = (e) => {
  const msg = JSON.parse(e.data);
  if (msg.id !== undefined) waiting.get(msg.id)?.(msg.result ?? msg.error);
};
function send(method: string, params: Record<string, unknown> = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise<unknown>((resolve) => waiting.set(id, resolve));
}

await send("HeapProfiler.enable");
await send("HeapProfiler.startSampling", {
  samplingInterval: Number(values.interval),
  includeObjectsCollectedByMajorGC: !values.survivors,
  includeObjectsCollectedByMinorGC: !values.survivors && !values.promoted,
});
console.log("sampling");
await new Promise((r) => setTimeout(r, Number(values.seconds) * 1000));
const { profile } = await send("HeapProfiler.stopSampling") as {
  profile: { head: SampleNode };
};
ws.close();

const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
function walk(node: SampleNode, stack: Set<string>) {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.replace(
    /^.*\/(node_modules\/\.deno\/[^/]+|work\/[^/]+)\//,
    "",
  );
  const key = `${functionName || "(anonymous)"} (${file}:${lineNumber + 1})`;
  self.set(key, (self.get(key) ?? 0) + node.selfSize);
  all += node.selfSize;
  const added = !stack.has(key);
  if (added) stack.add(key);
  let sum = node.selfSize;
  for (const c of node.children) sum += walk(c, stack);
  if (added) {
    total.set(key, (total.get(key) ?? 0) + sum);
    stack.delete(key);
  }
  return sum;
}
walk(profile.head, new Set());
const calls = Number(values.calls);
const per = (bytes: number) =>
  calls > 0 ? `${(bytes / calls).toFixed(0).padStart(6)} B/op` : "";
const top = Number(values.top);
console.log(`sampled ${(all / 1e6).toFixed(1)} MB ${per(all)}`);
console.log("\nself:");
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${(100 * v / all).toFixed(1).padStart(5)}% ${per(v)}  ${k}`);
}
console.log("\ninclusive:");
for (const [k, v] of [...total].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${(100 * v / all).toFixed(1).padStart(5)}% ${per(v)}  ${k}`);
}
