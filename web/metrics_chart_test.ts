import assert from "node:assert/strict";
import { formatValue, niceTop, unitOf } from "./metrics_chart.ts";

Deno.test("niceTop() rounds an axis top up to 1, 2, 2.5 or 5 times a power of ten", () => {
  assert.equal(niceTop(0), 1);
  assert.equal(niceTop(0.7), 1);
  assert.equal(niceTop(1.3), 2);
  assert.equal(niceTop(2.2), 2.5);
  assert.equal(niceTop(138), 200);
  assert.equal(niceTop(201), 250);
  assert.equal(niceTop(4000), 5000);
  assert.equal(niceTop(9001), 10000);
});

Deno.test("formatValue() keeps three significant digits and integers whole", () => {
  assert.equal(formatValue(0.3148), "0.315");
  assert.equal(formatValue(2.5), "2.5");
  assert.equal(formatValue(12.345), "12.3");
  assert.equal(formatValue(138.6), "139");
  assert.equal(formatValue(7), "7");
});

Deno.test("unitOf() names the unit of each kind of metric", () => {
  assert.equal(unitOf("cpu_usage"), "%");
  assert.equal(unitOf("memory_usage"), "MiB");
  assert.equal(unitOf("deliveries_per_second"), "/s");
  assert.equal(unitOf("rooms"), "");
});
