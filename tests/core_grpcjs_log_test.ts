/**
 * grpc-js's own log lines in the core (server/log.ts, grpcJsLogger): it
 * logs every request header it cannot take as metadata, once per request,
 * so a client could fill the core's log with them, raw, and break
 * `--log-format json`. A real core process, a raw HTTP/2 client.
 */
import assert from "node:assert/strict";
import { GRPC_JS_LINES_PER_SECOND } from "../server/log.ts";
import { FrameType } from "../protocol/http2/frames.ts";
import { grpcRequest, rawClient } from "./fixtures/h2_raw_client.ts";
import { frame, u32 } from "./fixtures/h2_raw_peer.ts";
import { QUIET_CORE_ARGS, spawnCore } from "./support/core_process.ts";

const REQUESTS = 60;

Deno.test("grpc-js's lines about a client's headers are JSON under --log-format json, escaped, and at most GRPC_JS_LINES_PER_SECOND a second, the rest summed up", async () => {
  await using core = await spawnCore([
    ...QUIET_CORE_ARGS,
    "--log-format",
    "json",
  ]);
  {
    using peer = await rawClient(core.port);
    for (let i = 0; i < REQUESTS; i++) {
      const id = 1 + 2 * i;
      // A latin1 value and an ESC: valid HTTP/2, not valid gRPC metadata.
      await peer.write(
        grpcRequest(peer, id, "/chat.ChatService/Chat", [
          ["x-a", "caf\u00e9\u001b[31m"],
        ]),
      );
      await peer.write(frame(FrameType.RST_STREAM, 0, id, u32(8)));
    }
    // The connection still serves: a PING is answered after them all.
    await peer.write(frame(FrameType.PING, 0, 0, new Uint8Array(8)));
    await peer.until((f) => f.type === FrameType.PING);
  }
  // The summary is written when its second ends.
  await new Promise((r) => setTimeout(r, 1200));
  await core.kill("SIGTERM");
  const lines = core.output().split("\n").filter((l) => l !== "");
  const records = lines.map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      assert.fail(`not a JSON line: ${JSON.stringify(l)}`);
    }
  });
  const grpcJs = records.filter((r) => String(r.msg).startsWith("grpc-js: "));
  const summaries = grpcJs.filter((r) =>
    / more lines in that second/.test(r.msg)
  );
  const single = grpcJs.filter((r) => !summaries.includes(r));
  assert.ok(single.length > 0, "grpc-js's lines are logged");
  // Each request made one line: logged one by one, or summed up.
  const summed = summaries.reduce(
    (n, r) => n + Number(/(\d+) more lines/.exec(r.msg)![1]),
    0,
  );
  assert.equal(single.length + summed, REQUESTS);
  assert.ok(
    single.length <= 2 * GRPC_JS_LINES_PER_SECOND,
    `${single.length} lines one by one`,
  );
  for (const r of single) {
    assert.equal(r.level, "warn");
    assert.equal(r.component, "core");
    assert.match(r.msg, /x-a/);
    assert.ok(!r.msg.includes("\u001b"), "control characters are escaped");
  }
});
