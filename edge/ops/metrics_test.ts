import assert from "node:assert/strict";
import client from "prom-client";
import { codeName, DURATION_BUCKETS, EdgeMetrics } from "./metrics.ts";

const NAME = "chat_edge_call_duration_seconds";

/** The block of one metric in a text exposition. */
function section(text: string, name: string): string {
  const block = text.split("\n\n").find((b) => b.startsWith(`# HELP ${name} `));
  assert.ok(block, `no ${name} in\n${text}`);
  return block.trimEnd();
}

Deno.test("the call duration histogram exports what prom-client's Histogram does with the same observations", async () => {
  const metrics = new EdgeMetrics();
  const registry = new client.Registry();
  const reference = new client.Histogram({
    name: NAME,
    help: "Call duration from request to the end of the response.",
    labelNames: ["protocol", "method", "code"],
    buckets: [...DURATION_BUCKETS],
    registers: [registry],
  });
  // Every bound exactly, values between and beyond the last one, zero, in
  // several series created in an interleaved order.
  const durations = [
    0,
    ...DURATION_BUCKETS,
    ...DURATION_BUCKETS.map((b) => b * 1.5),
    0.0001,
    0.000_3,
    1234.5,
  ];
  const series: [string, string, number][] = [
    ["grpc-web", "chat.ChatService/SendMessage", 0],
    ["connect", "chat.ChatService/SendMessage", 0],
    ["grpc-web", "unknown", 12],
    ["grpc-web-text", "chat.ChatService/Subscribe", 1],
  ];
  let i = 0;
  for (const seconds of durations) {
    for (let k = 0; k <= i % series.length; k++) {
      const [protocol, method, code] = series[(i + k) % series.length];
      metrics.callStarted(protocol);
      metrics.callEnded(protocol, method, code, seconds, 10, 20);
      reference.labels(protocol, method, codeName(code)).observe(seconds);
    }
    i++;
  }
  const ours = section(await metrics.render(), NAME);
  const theirs = section(await registry.metrics(), NAME);
  assert.equal(ours, theirs);
  assert.match(ours, /_bucket\{le="\+Inf",protocol="grpc-web-text"/);

  const json = await metrics.registry.getMetricsAsJSON();
  const refJson = await registry.getMetricsAsJSON();
  assert.deepEqual(
    JSON.parse(JSON.stringify(json.find((m) => m.name === NAME))),
    JSON.parse(JSON.stringify(refJson.find((m) => m.name === NAME))),
  );
});

Deno.test("the call duration histogram is empty before any call, as prom-client's", async () => {
  const text = await new EdgeMetrics().render();
  assert.equal(
    section(text, NAME),
    `# HELP ${NAME} Call duration from request to the end of the response.\n` +
      `# TYPE ${NAME} histogram`,
  );
});
