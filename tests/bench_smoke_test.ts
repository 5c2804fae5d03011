/**
 * Smoke test of `deno task bench --short`: every scenario runs end to end
 * against the real core (a subprocess) and reports sane content. No
 * performance thresholds: CI machines are too noisy for them.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { MessageSchema, MessageType } from "../gen/chat_pb.ts";
import { readStringField } from "../bench/wire.ts";
import { quantile } from "../bench/stats.ts";
import type { BenchReport } from "../bench/report.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test("deno task bench --short runs every case against the core and saves JSON", async () => {
  const out = await Deno.makeTempDir({ prefix: "bench-smoke-" });
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "bench", "--short", "--out", out],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(r.stdout);
    const stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, stdout + stderr);
    const files = [...Deno.readDirSync(out)].map((e) => e.name).filter((n) =>
      n.endsWith(".json")
    );
    assert.equal(files.length, 1);
    const report: BenchReport = JSON.parse(
      await Deno.readTextFile(`${out}/${files[0]}`),
    );
    assert.equal(report.mode, "short");
    const byCase = Object.fromEntries(report.results.map((x) => [x.case, x]));
    for (const name of Object.keys(byCase)) {
      assert.match(stdout, new RegExp(`\\| ${name} `));
    }

    const unary = byCase.unary_c16_k1;
    assert.ok(unary.ok && (unary.calls as number) > 0 && unary.errors === 0);
    assert.ok(
      (unary.p50_us as number) > 0 &&
        (unary.p99_us as number) >= (unary.p50_us as number),
    );
    assert.ok((unary.server_cpu_s as number) > 0, "server CPU read from /proc");
    const fan = byCase.fanout_s100_p4;
    assert.ok(
      fan.ok && fan.welcomes === fan.subs && (fan.received as number) > 0,
    );
    assert.equal(fan.expected, (fan.sent as number) * (fan.subs as number));
    const up = byCase.upload_n200k;
    assert.ok(up.ok && up.count_ok === true && up.message_count === up.n);
    const chat = byCase.chat_n20k;
    assert.ok(chat.ok && chat.pipelined_echoes === chat.n);
    for (
      const [name, rooms] of [
        ["memory_idle10k", 100],
        ["memory_idle100k", 100],
        ["memory_idle100k_room1", 1],
      ] as const
    ) {
      const mem = byCase[name];
      assert.ok(mem.ok && mem.welcomed === mem.subs, JSON.stringify(mem));
      assert.equal(mem.rooms, rooms);
      assert.ok((mem.rss_mb as number) > (mem.rss_before_mb as number) * 0.5);
    }
    for (
      const web of ["web_unary_c16", "connect_unary_c16", "web_stream_s10"]
    ) {
      const w = byCase[web];
      assert.ok(w.ok, `${web}: ${JSON.stringify(w)}`);
      if (!w.skipped) {
        assert.ok((w.ops_total as number) > 0 && "edge_cpu_s" in w);
      }
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("readStringField() reads a Message's content and id from wire bytes", () => {
  const bytes = toBinary(
    MessageSchema,
    create(MessageSchema, {
      id: "echo_q7",
      user: "Server",
      content: "FO|1.2|123.5",
      room: "r",
      type: MessageType.SYSTEM,
      timestamp: { seconds: 1_700_000_000n, nanos: 5 },
    }),
  );
  assert.equal(readStringField(bytes, 3), "FO|1.2|123.5");
  assert.equal(readStringField(bytes, 1), "echo_q7");
  assert.equal(readStringField(new Uint8Array(0), 3), undefined);
});

Deno.test("quantile() is nearest-rank like chatload's", () => {
  const s = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(s, 0.5), 50);
  assert.equal(quantile(s, 0.99), 99);
  assert.equal(quantile(s, 1), 100);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});
