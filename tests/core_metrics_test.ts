import assert from "node:assert/strict";
import type { Metric } from "../gen/chat_pb.ts";
import { startCore, take } from "./support/core.ts";

const byName = (rows: Metric[]) => new Map(rows.map((m) => [m.name, m]));

Deno.test("StreamMetrics reports this server's real measurements with labels", async () => {
  await using f = await startCore({ instanceId: "core-a" });
  const sub = f.newClient().subscribeMessages({ room: "m", user: "watcher" });
  await take(sub, 1);
  const metrics = f.client.streamMetrics({
    instanceId: "server-01",
    intervalSeconds: 1,
  });
  // Work inside the first interval: 30 calls, each reaching one subscriber.
  for (let i = 0; i < 30; i++) {
    await f.client.sendMessage({ user: "u", room: "m", content: `${i}` });
  }
  const rows = byName(await take(metrics, 11, 5000));
  for (
    const name of [
      "cpu_usage",
      "memory_usage",
      "requests_per_second",
      "active_streams",
      "subscribers",
    ]
  ) {
    assert.ok(rows.has(name), `has ${name}`);
  }
  const rps = rows.get("requests_per_second")!;
  // 30 unary calls + 1 subscription + the metrics call itself, over about a second.
  assert.ok(
    rps.value >= 15 && rps.value <= 40,
    `requests_per_second ${rps.value}`,
  );
  const rss = rows.get("memory_usage")!;
  assert.ok(
    rss.value > 10 && rss.value < 4096,
    `memory_usage ${rss.value} MiB`,
  );
  assert.equal(rss.labels.unit, "MiB");
  // The README lists the labels beyond the three every row has.
  const extra = (m: Metric) =>
    Object.entries(m.labels).filter(([k]) =>
      !["instance", "server_instance", "pid"].includes(k)
    );
  assert.deepEqual(
    [...rows.values()].map((m) => [m.name, extra(m)]),
    [
      ["cpu_usage", [["unit", "percent"]]],
      ["memory_usage", [["type", "resident"], ["unit", "MiB"]]],
      ["heap_used", [["type", "heap"], ["unit", "MiB"]]],
      ["requests_per_second", [["endpoint", "grpc"]]],
      ["messages_per_second", []],
      ["deliveries_per_second", []],
      ["dropped_messages_total", []],
      ["active_streams", []],
      ["subscribers", []],
      ["rooms", []],
      ["store_up", [["store", "memory"]]],
    ],
  );
  const cpu = rows.get("cpu_usage")!;
  assert.ok(cpu.value > 0 && cpu.value < 400, `cpu_usage ${cpu.value}%`);
  assert.equal(rows.get("subscribers")!.value, 1);
  assert.equal(rows.get("active_streams")!.value, 2);
  assert.ok(rows.get("deliveries_per_second")!.value >= 15);
  for (const m of rows.values()) {
    assert.equal(m.labels.instance, "server-01");
    assert.equal(m.labels.server_instance, "core-a");
    assert.equal(m.labels.pid, String(Deno.pid));
    assert.ok(m.timestamp);
  }
  // The next interval saw no calls: the rate falls to zero.
  const next = byName(await take(metrics, 11, 3000));
  assert.equal(next.get("requests_per_second")!.value, 0);
  metrics.cancel();
  sub.cancel();
});

Deno.test("StreamMetrics honours interval_seconds", async () => {
  await using f = await startCore();
  const metrics = f.client.streamMetrics({
    instanceId: "x",
    intervalSeconds: 2,
  });
  const t0 = performance.now();
  await take(metrics, 10, 5000);
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 1900, `first batch after ${elapsed} ms`);
  metrics.cancel();
});

Deno.test("StreamMetrics without an instance_id labels its rows with the core's --instance-id", async () => {
  await using f = await startCore({ instanceId: "core-b" });
  const metrics = f.client.streamMetrics({
    instanceId: "",
    intervalSeconds: 1,
  });
  for (const m of await take<Metric>(metrics, 10, 3000)) {
    assert.equal(m.labels.instance, "core-b");
    assert.equal(m.labels.server_instance, "core-b");
  }
  metrics.cancel();
});
