/**
 * `deno task serve --cores 2`: two supervised cores on a redis-server that
 * serve starts itself, one edge balancing over them; a Redis that dies is
 * started again; Ctrl-C (SIGTERM) stops everything, Redis included.
 */
import assert from "node:assert/strict";
import { freePort, freePortPair } from "./support/core_process.ts";

const MAIN = new URL("../tools/serve/main.ts", import.meta.url).pathname;

Deno.test("serve --cores 2 starts a local Redis (again when it dies), two cores and a balancing edge, and stops them all", async () => {
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
  let err = "";
  const errText = (async () => {
    for await (
      const chunk of child.stderr.pipeThrough(new TextDecoderStream())
    ) err += chunk;
    return err;
  })();
  const errTextSoFar = () => Promise.resolve(err);
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

    // Its Redis dies: serve starts it again on the same port, the cores
    // reconnect by themselves and the room goes on in a new epoch.
    const port = Number(new URL(redisUrl).port);
    const redis = await Deno.connect({ hostname: "127.0.0.1", port });
    await redis.write(new TextEncoder().encode("SHUTDOWN NOSAVE\r\n"));
    await redis.read(new Uint8Array(64)).catch(() => null);
    redis.close();
    let after;
    for (const until = Date.now() + 15_000; !after;) {
      const res = await fetch(`${edge}/chat.ChatService/SendMessage`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user: "u", room: "serve", content: "back" }),
      });
      if (res.ok) after = await res.json();
      else await res.body?.cancel();
      assert.ok(after || Date.now() < until, "no Redis again within 15 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(after.offset, "1");
    assert.match(
      await errTextSoFar(),
      /redis-server exited .*starting it again/,
    );

    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      "redis-server still running",
    );
  } finally {
    try {
      // Not SIGKILL: serve stops its children (own process groups) itself.
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await child.status;
    await read;
    await errText;
  }
});
