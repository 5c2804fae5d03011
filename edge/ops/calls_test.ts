import assert from "node:assert/strict";
import {
  CallObserver,
  formatCallLine,
  LineBuffer,
  REFUSAL_LINES_PER_SECOND,
} from "./calls.ts";
import { EdgeMetrics } from "./metrics.ts";

function observer(format: "text" | "json" | "off", lines: string[]) {
  return new CallObserver({
    metrics: new EdgeMetrics(),
    knownPaths: new Set(["/chat.ChatService/SendMessage"]),
    logFormat: format,
    write: (line) => lines.push(line),
  });
}

Deno.test("CallRecord.end() logs one text line once, with status, duration and bytes", () => {
  const lines: string[] = [];
  const call = observer("text", lines).start(
    "grpc-web",
    "/chat.ChatService/SendMessage",
  );
  call.bytesIn = 12;
  call.bytesOut = 34;
  call.end(0);
  call.end(1);
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    /^\d{4}-\d\d-\d\dT[\d:.]+Z call grpc-web \/chat\.ChatService\/SendMessage OK [\d.]+ms in=12 out=34$/,
  );
});

Deno.test("formatCallLine() quotes a hostile path in text and escapes it in JSON", () => {
  const lines: string[] = [];
  const obs = observer("off", lines);
  const call = obs.start("connect", "/a b\nfake line/x");
  call.end(5);
  assert.deepEqual(lines, [], "off writes nothing");
  const text = formatCallLine("text", call, 5, 1.5);
  assert.ok(!text.includes("\n"));
  assert.match(text, / "\/a b\\nfake line\/x" NOT_FOUND 1.5ms/);
  const json = JSON.parse(formatCallLine("json", call, 5, 1.5));
  assert.equal(json.method, "/a b\nfake line/x");
  assert.equal(json.status, "NOT_FOUND");
  assert.equal(json.duration_ms, 1.5);
  assert.equal(json.component, "edge", "as the core's lines name theirs");
});

Deno.test("CallObserver labels unknown paths as unknown in metrics", async () => {
  const obs = observer("off", []);
  obs.start("grpc-web", "/evil.Path/" + "x".repeat(100)).end(12);
  obs.start("grpc-web", "/chat.ChatService/SendMessage").end(0);
  const text = await obs.metrics.render();
  assert.match(
    text,
    /chat_edge_calls_total\{protocol="grpc-web",method="unknown",code="UNIMPLEMENTED"\} 1/,
  );
  assert.doesNotMatch(text, /evil/);
  assert.match(
    text,
    /chat_edge_active_calls\{protocol="grpc-web"\} 0/,
  );
});

Deno.test("LineBuffer joins lines into one write, on its timer or flush()", async () => {
  const writes: string[] = [];
  const buffer = new LineBuffer((text) => writes.push(text), 5);
  buffer.push("a");
  buffer.push("b");
  assert.deepEqual(writes, []);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(writes, ["a\nb"]);
  buffer.push("c");
  buffer.flush();
  buffer.flush();
  assert.deepEqual(writes, ["a\nb", "c"]);
  for (let i = 0; i < 512; i++) buffer.push(String(i));
  // (deepEqual narrowed the array's type; read it afresh.)
  const all: string[] = writes.slice();
  assert.equal(all.length, 3, "a full buffer is written at once");
  assert.equal(all[2].split("\n").length, 512);
});

Deno.test("CallObserver.refused(): every refusal is counted, but only REFUSAL_LINES_PER_SECOND are logged per second; the rest are summed up in one line", async () => {
  const lines: string[] = [];
  let now = 5_000;
  const metrics = new EdgeMetrics();
  const obs = new CallObserver({
    metrics,
    knownPaths: new Set(["/chat.ChatService/SendMessage"]),
    logFormat: "json",
    write: (line) => lines.push(line),
    now: () => now,
  });
  const path = "/chat.ChatService/SendMessage";
  for (let i = 0; i < 1000; i++) obs.refused("connect", path, 8);
  assert.equal(lines.length, REFUSAL_LINES_PER_SECOND);
  // A normal call in the same second is logged as always.
  obs.start("connect", path).end(0);
  assert.equal(lines.length, REFUSAL_LINES_PER_SECOND + 1);
  now += 1000;
  obs.refused("connect", path, 8);
  const summary = JSON.parse(lines[REFUSAL_LINES_PER_SECOND + 1]);
  assert.equal(summary.refused, 1000 - REFUSAL_LINES_PER_SECOND);
  assert.equal(summary.level, "warn");
  assert.equal(JSON.parse(lines.at(-1)!).status, "RESOURCE_EXHAUSTED");
  const text = await metrics.render();
  assert.match(
    text,
    /chat_edge_calls_total\{protocol="connect",method="chat.ChatService\/SendMessage",code="RESOURCE_EXHAUSTED"\} 1001/,
  );
});

Deno.test("CallObserver.refused(): a flood that stops is summed up when its second ends, with no later refusal; close() writes a pending summary", async () => {
  const lines: string[] = [];
  const obs = new CallObserver({
    metrics: new EdgeMetrics(),
    knownPaths: new Set(),
    logFormat: "text",
    write: (line) => lines.push(line),
    now: () => 7_990, // 10 ms before the second ends
  });
  for (let i = 0; i < 50; i++) obs.refused("grpc-web", "/x/y", 8);
  assert.equal(lines.length, REFUSAL_LINES_PER_SECOND);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(lines.length, REFUSAL_LINES_PER_SECOND + 1);
  assert.match(
    lines.at(-1)!,
    /30 more refused calls in that second, not logged one by one$/,
  );
  // The same second again (the fake clock stands still): no line is owed
  // twice, and close() writes what is pending and stops the timer.
  for (let i = 0; i < 5; i++) obs.refused("grpc-web", "/x/y", 8);
  assert.equal(lines.length, REFUSAL_LINES_PER_SECOND + 1);
  obs.close();
  assert.match(lines.at(-1)!, / 5 more refused calls in that second/);
  obs.close();
  assert.equal(lines.length, REFUSAL_LINES_PER_SECOND + 2);
});
