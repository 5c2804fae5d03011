/**
 * The core's behaviour suites on the other HTTP/2 transport: every other
 * test runs on the default (the core's own, http2/server/); this one runs the
 * RPC, error, lifecycle, metrics, chat, health, reflection and Prometheus
 * suites again in a child
 * `deno test` with `CHAT_TEST_TRANSPORT=node` (grpc-js on Deno's
 * node:http2), so `--transport node` stays a working choice.
 */
import assert from "node:assert/strict";

const SUITES = [
  "tests/core_rpc_test.ts",
  "tests/core_errors_test.ts",
  "tests/core_lifecycle_test.ts",
  "tests/core_metrics_test.ts",
  "tests/core_perf_chat_test.ts",
  "tests/core_perf_raw_reader_test.ts",
  "tests/core_health_test.ts",
  "tests/core_reflection_test.ts",
  "tests/core_prometheus_test.ts",
];

Deno.test("the core suites pass on --transport node", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", ...SUITES],
    env: { CHAT_TEST_TRANSPORT: "node", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) +
    new TextDecoder().decode(out.stderr);
  const summary = text.match(/(ok|FAILED) \| (\d+) passed.*\| (\d+) failed/);
  assert.ok(summary, `no test summary:\n${text.slice(-3000)}`);
  assert.equal(summary[3], "0", text.slice(-3000));
  assert.ok(Number(summary[2]) >= 30, `only ${summary[2]} tests ran`);
  assert.equal(out.code, 0, text.slice(-3000));
});
