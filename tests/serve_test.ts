/**
 * `deno task serve --cores 2`: two supervised cores on a redis-server that
 * serve starts itself, one edge balancing over them; Ctrl-C (SIGTERM) stops
 * everything, Redis included.
 */
import assert from "node:assert/strict";
import { freePort, freePortPair } from "./support/core_process.ts";

const MAIN = new URL("../tools/serve/main.ts", import.meta.url).pathname;

Deno.test("serve --cores 2 starts a local Redis, two cores and a balancing edge, and stops them all", async () => {
  const corePort = freePortPair();
  const edgePort = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-run",
      "--allow-read",
      MAIN,
      "--cores",
      "2",
      "--core-port",
      String(corePort),
      "--port",
      String(edgePort),
      "--metrics-port",
      "off",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const read = (async () => {
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) out += chunk;
  })();
  const errText = new Response(child.stderr).text();
  try {
    const until = Date.now() + 30_000;
    while (!out.includes("Ctrl-C stops them all")) {
      if (Date.now() > until) {
        child.kill("SIGTERM");
        assert.fail(`no banner:\n${out}\n${await errText}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const redisUrl = out.match(/broker:\s+(redis:\/\/\S+)/)![1];
    assert.match(
      out,
      new RegExp(`core 2 \\(gRPC, h2c\\):\\s+127\\.0\\.0\\.1:${corePort + 1}`),
    );
    const edge = `http://127.0.0.1:${edgePort}`;
    const health = await (await fetch(`${edge}/healthz`)).json();
    assert.deepEqual(
      health.upstreams.map((u: { url: string }) => u.url),
      [`http://127.0.0.1:${corePort}`, `http://127.0.0.1:${corePort + 1}`],
    );
    const offsets = [];
    const idBlocks = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${edge}/chat.ChatService/SendMessage`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user: "u", room: "serve", content: `m${i}` }),
      });
      assert.equal(res.status, 200);
      const body = await res.json();
      offsets.push(body.offset);
      // Each core hands out ids from its own block of 2^19.
      idBlocks.add(Math.floor((Number(body.messageId.slice(4)) - 1) / 2 ** 19));
    }
    // Both cores took calls, and they share the room's offsets.
    assert.equal(idBlocks.size, 2);
    assert.deepEqual(offsets, ["1", "2", "3", "4"]);

    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    const port = Number(new URL(redisUrl).port);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      "redis-server still running",
    );
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await read;
    await errText;
  }
});
