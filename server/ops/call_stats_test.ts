import assert from "node:assert/strict";
import { CallStats, CODE_NAMES, LATENCY_BUCKETS } from "./call_stats.ts";

Deno.test("CallStats.end() counts codes and buckets latencies by upper bound", () => {
  const stats = new CallStats();
  stats.register("/p.S/M", "unary");
  stats.start("/p.S/M");
  stats.end("/p.S/M", 0, 0.5); // 0.0005 s: the first bucket (le is inclusive)
  stats.end("/p.S/M", 0, 3); // 0.003 s: le=0.004
  stats.end("/p.S/M", 14, 60_000); // 60 s: +Inf
  stats.end("/p.S/M", 99, 1); // not a gRPC code: counted as UNKNOWN
  const row = stats.get("/p.S/M")!;
  assert.equal(row.service, "p.S");
  assert.equal(row.method, "M");
  assert.equal(row.started, 1);
  assert.equal(row.handled[0], 2);
  assert.equal(row.handled[14], 1);
  assert.equal(row.handled[2], 1);
  assert.equal(row.buckets[0], 1);
  assert.equal(row.buckets[LATENCY_BUCKETS.indexOf(0.004)], 1);
  assert.equal(row.buckets[LATENCY_BUCKETS.indexOf(0.001)], 1);
  assert.equal(row.buckets[LATENCY_BUCKETS.length], 1);
  assert.ok(Math.abs(row.latencySum - 60.0045) < 1e-9);
});

Deno.test("CallStats ignores paths it does not know", () => {
  const stats = new CallStats();
  stats.start("/x.Y/Z");
  stats.end("/x.Y/Z", 0, 1);
  assert.equal([...stats.methods()].length, 0);
});

Deno.test("LATENCY_BUCKETS double from 0.5 ms and print as plain decimals", () => {
  assert.deepEqual(LATENCY_BUCKETS.map(String), [
    "0.0005",
    "0.001",
    "0.002",
    "0.004",
    "0.008",
    "0.016",
    "0.032",
    "0.064",
    "0.128",
    "0.256",
    "0.512",
    "1.024",
    "2.048",
    "4.096",
    "8.192",
  ]);
});

Deno.test("CODE_NAMES has the 17 gRPC code names in code order", () => {
  assert.equal(CODE_NAMES.length, 17);
  assert.equal(CODE_NAMES[0], "OK");
  assert.equal(CODE_NAMES[3], "INVALID_ARGUMENT");
  assert.equal(CODE_NAMES[16], "UNAUTHENTICATED");
});
