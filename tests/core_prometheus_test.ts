/**
 * The core's Prometheus endpoint (server/ops/metrics*.ts): scraped over
 * HTTP/1.1 like Prometheus does, asserting that the values move with real
 * calls: the call table (including SendMessage on the direct unary path),
 * streams, subscribers, rooms, deliveries, drops, queue depth, the store
 * hook, health and the process's CPU and RSS. Runs on both transports
 * (tests/core_transports_test.ts).
 */
import assert from "node:assert/strict";
import { Client, credentials, Metadata, status } from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { Message } from "../gen/chat_pb.ts";
import type { HealthSource } from "../server/ops/health.ts";
import {
  type CoreFixture,
  eventually,
  rejection,
  startCore,
  streamError,
  take,
  takeUntil,
} from "./support/core.ts";

async function scrape(f: CoreFixture): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${f.core.metricsPort}/metrics`);
  assert.equal(res.status, 200);
  assert.match(
    res.headers.get("content-type")!,
    /^text\/plain; version=0\.0\.4/,
  );
  return await res.text();
}

/** The value of one sample, `name{labels}`; undefined if absent. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((
        x,
      ) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) {
      return Number(m[3]);
    }
  }
  return undefined;
}

const SEND = { grpc_service: "chat.ChatService", grpc_method: "SendMessage" };

Deno.test("/metrics counts SendMessage (direct unary path) by code, with a latency histogram", async () => {
  await using f = await startCore({ metricsPort: 0 });
  let text = await scrape(f);
  assert.equal(sample(text, "grpc_server_started_total", SEND), 0);
  assert.equal(
    sample(text, "grpc_server_handled_total", { ...SEND, grpc_code: "OK" }),
    undefined,
  );
  for (let i = 0; i < 3; i++) {
    await f.client.sendMessage({ user: "u", room: "r", content: `${i}` });
  }
  const err = await rejection(
    f.client.sendMessage({ user: "", room: "r", content: "x" }),
  );
  assert.equal(err.code, status.INVALID_ARGUMENT);
  text = await scrape(f);
  assert.equal(sample(text, "grpc_server_started_total", SEND), 4);
  const handled = (code: string) =>
    sample(text, "grpc_server_handled_total", { ...SEND, grpc_code: code });
  assert.equal(handled("OK"), 3);
  assert.equal(handled("INVALID_ARGUMENT"), 1);
  assert.equal(
    sample(text, "grpc_server_handling_seconds_count", {
      ...SEND,
      grpc_type: "unary",
    }),
    4,
  );
  assert.equal(
    sample(text, "grpc_server_handling_seconds_bucket", {
      ...SEND,
      le: "+Inf",
    }),
    4,
  );
  const sum = sample(text, "grpc_server_handling_seconds_sum", SEND)!;
  assert.ok(sum > 0 && sum < 10, `latency sum ${sum}`);
  assert.equal(sample(text, "chat_messages_published_total"), 3);
});

Deno.test("/metrics shows streams, subscribers, rooms, deliveries and cancelled streams", async () => {
  await using f = await startCore({ metricsPort: 0 });
  const subs = [
    f.client.subscribeMessages({ room: "a", user: "1" }),
    f.client.subscribeMessages({ room: "a", user: "2" }),
    f.client.subscribeMessages({ room: "b", user: "3" }),
  ];
  await Promise.all(subs.map((s) => take(s, 1)));
  const got = Promise.all(subs.slice(0, 2).map((s) => take(s, 2)));
  await f.client.sendMessage({ user: "u", room: "a", content: "1" });
  await f.client.sendMessage({ user: "u", room: "a", content: "2" });
  await got;
  let text = await scrape(f);
  assert.equal(sample(text, "chat_active_streams"), 3);
  assert.equal(sample(text, "chat_subscribers"), 3);
  assert.equal(sample(text, "chat_rooms"), 2);
  assert.equal(sample(text, "chat_deliveries_total"), 4);
  assert.equal(
    sample(text, "grpc_server_started_total", {
      grpc_method: "SubscribeMessages",
      grpc_type: "server_stream",
    }),
    3,
  );
  for (const s of subs) s.cancel();
  await eventually(() => f.core.snapshot().subscribers === 0, "unsubscribed");
  text = await scrape(f);
  assert.equal(sample(text, "chat_active_streams"), 0);
  assert.equal(sample(text, "chat_rooms"), 0);
  assert.equal(
    sample(text, "grpc_server_handled_total", {
      grpc_method: "SubscribeMessages",
      grpc_code: "CANCELLED",
    }),
    3,
  );
});

Deno.test("/metrics counts streams that end with OK and with an error status", async () => {
  await using f = await startCore({ metricsPort: 0 });
  const count = await new Promise<number>((resolve, reject) => {
    const up = f.client.uploadMessages((err, res) =>
      err ? reject(err) : resolve(res!.messageCount)
    );
    up.write({ id: "1", user: "u", room: "r", content: "c" });
    up.end();
  });
  assert.equal(count, 1);
  const bad = f.client.streamMetrics({ instanceId: "x", intervalSeconds: -1 });
  const err = await new Promise<{ code: number }>((resolve) =>
    bad.on("error", resolve)
  );
  assert.equal(err.code, status.INVALID_ARGUMENT);
  const text = await scrape(f);
  assert.equal(
    sample(text, "grpc_server_handled_total", {
      grpc_method: "UploadMessages",
      grpc_code: "OK",
    }),
    1,
  );
  assert.equal(
    sample(text, "grpc_server_handled_total", {
      grpc_method: "StreamMetrics",
      grpc_code: "INVALID_ARGUMENT",
    }),
    1,
  );
});

Deno.test("/metrics counts a stream whose deadline passed as DEADLINE_EXCEEDED, not CANCELLED", async () => {
  await using f = await startCore({ metricsPort: 0 });
  const deadline = () => new Date(Date.now() + 300);
  const errors = await Promise.all([
    // The direct stream path, then grpc-js's own.
    streamError(
      f.client.subscribeMessages({ room: "r", user: "u" }, {
        deadline: deadline(),
      }),
    ),
    streamError(
      f.client.streamMetrics({ instanceId: "x" }, { deadline: deadline() }),
    ),
  ]);
  assert.deepEqual(errors.map((e) => e.code), [
    status.DEADLINE_EXCEEDED,
    status.DEADLINE_EXCEEDED,
  ]);
  await eventually(() => f.core.snapshot().subscribers === 0, "unsubscribed");
  const text = await scrape(f);
  for (const method of ["SubscribeMessages", "StreamMetrics"]) {
    assert.equal(
      sample(text, "grpc_server_handled_total", {
        grpc_method: method,
        grpc_code: "DEADLINE_EXCEEDED",
      }),
      1,
      method,
    );
    assert.equal(
      sample(text, "grpc_server_handled_total", {
        grpc_method: method,
        grpc_code: "CANCELLED",
      }),
      undefined,
      method,
    );
  }
});

Deno.test("/metrics counts calls whose one request cannot be decoded as INTERNAL (direct stream path, grpc-js's unary and streaming paths)", async () => {
  await using f = await startCore({ metricsPort: 0 });
  const raw = new Client(f.addr, credentials.createInsecure());
  const garbage = Buffer.from([0xff, 0xff]);
  const identity = (b: Buffer) => b;
  try {
    const codes = await Promise.all(
      [
        "/chat.ChatService/SubscribeMessages",
        "/chat.ChatService/StreamMetrics",
        "/grpc.health.v1.Health/Watch",
      ].map((path) =>
        new Promise<number>((resolve) => {
          const call = raw.makeServerStreamRequest(
            path,
            identity,
            identity,
            garbage,
            new Metadata(),
          );
          call.on("error", () => {});
          call.on("status", (s) => resolve(s.code));
        })
      ).concat(
        new Promise<number>((resolve) => {
          raw.makeUnaryRequest(
            "/grpc.health.v1.Health/Check",
            identity,
            identity,
            garbage,
            new Metadata(),
            (err) => resolve(err?.code ?? status.OK),
          );
        }),
      ),
    );
    assert.deepEqual(codes, Array(4).fill(status.INTERNAL));
  } finally {
    raw.close();
  }
  const text = await scrape(f);
  for (
    const [service, method] of [
      ["chat.ChatService", "SubscribeMessages"],
      ["chat.ChatService", "StreamMetrics"],
      ["grpc.health.v1.Health", "Watch"],
      ["grpc.health.v1.Health", "Check"],
    ]
  ) {
    const labels = { grpc_service: service, grpc_method: method };
    assert.equal(sample(text, "grpc_server_started_total", labels), 1, method);
    assert.equal(
      sample(text, "grpc_server_handled_total", {
        ...labels,
        grpc_code: "INTERNAL",
      }),
      1,
      method,
    );
  }
});

Deno.test("/metrics shows queue depth, falling behind and drops of a subscriber that stopped reading", async () => {
  // History of 1: what the queue did not hold is dropped once it reads.
  await using f = await startCore({
    metricsPort: 0,
    queueSize: 5,
    slowConsumer: "drop",
    historySize: 1,
  });
  const slow = f.newClient().subscribeMessages({ room: "r", user: "slow" });
  await take(slow, 1); // and then it stops reading
  const pad = "x".repeat(2048);
  for (let i = 0; i < 400; i++) {
    await f.client.sendMessage({
      user: "p",
      room: "r",
      content: `${i}:${pad}`,
    });
  }
  let text = await scrape(f);
  assert.equal(sample(text, "chat_queued_messages"), 5);
  assert.equal(sample(text, "chat_queued_messages_max"), 5);
  assert.equal(sample(text, "chat_subscribers_fell_behind_total"), 1);
  // It reads again, up to the last message: the rest was not kept.
  await takeUntil<Message>(slow, (m) => m.content.startsWith("399:"));
  text = await scrape(f);
  assert.equal(sample(text, "chat_queued_messages"), 0);
  const dropped = sample(text, "chat_dropped_messages_total")!;
  assert.ok(dropped > 0, `dropped ${dropped}`);
  assert.equal(dropped, f.core.snapshot().dropped);
  slow.cancel();
});

Deno.test("/metrics has the process's CPU and RSS, the store hook and health", async () => {
  let up = true;
  const listeners = new Set<() => void>();
  const store: HealthSource = {
    name: "store",
    serving: () => up,
    watch: (fn) => (listeners.add(fn), () => listeners.delete(fn)),
  };
  await using f = await startCore({ metricsPort: 0, healthSources: [store] });
  let text = await scrape(f);
  const cpu = sample(text, "process_cpu_seconds_total")!;
  assert.ok(cpu > 0, `cpu ${cpu}`);
  const rss = sample(text, "process_resident_memory_bytes")!;
  assert.ok(rss > 10e6 && rss < 8e9, `rss ${rss}`);
  assert.ok(sample(text, "nodejs_heap_size_used_bytes")! > 0);
  // Deno feeds no GC entries: no histogram that would stay empty.
  assert.doesNotMatch(text, /nodejs_gc_duration_seconds/);
  assert.equal(sample(text, "chat_health_serving"), 1);
  f.core.storeLatency.observe("append", 0.003);
  f.core.storeLatency.observe("append", 0.2);
  up = false;
  for (const l of listeners) l();
  // Burn some CPU so that the counter visibly moves.
  const end = performance.now() + 50;
  while (performance.now() < end) Math.sqrt(Math.random());
  text = await scrape(f);
  assert.ok(sample(text, "process_cpu_seconds_total")! > cpu);
  assert.equal(
    sample(text, "chat_store_operation_seconds_count", { operation: "append" }),
    2,
  );
  assert.equal(
    sample(text, "chat_store_operation_seconds_bucket", {
      operation: "append",
      le: "0.004",
    }),
    1,
  );
  assert.equal(sample(text, "chat_health_serving"), 0);
});

Deno.test("the metrics port answers only GET /metrics, over HTTP/1.1 (curl)", async () => {
  await using f = await startCore({ metricsPort: 0 });
  const base = `http://127.0.0.1:${f.core.metricsPort}`;
  const curl = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--http1.1",
      "-w",
      "\n%{http_version} %{http_code}",
      `${base}/metrics`,
    ],
    stdout: "piped",
  }).output();
  const out = new TextDecoder().decode(curl.stdout);
  assert.match(out, /^# HELP /);
  assert.match(out, /\n1\.1 200$/);
  const other = await fetch(`${base}/`);
  assert.equal(other.status, 404);
  await other.body?.cancel();
  const post = await fetch(`${base}/metrics`, { method: "POST" });
  assert.equal(post.status, 405);
  await post.body?.cancel();
});

Deno.test("without --metrics-port there is no metrics endpoint", async () => {
  await using f = await startCore();
  assert.equal(f.core.metricsPort, null);
});
