/**
 * The Deno Deploy entry (edge/deploy.ts, deno.json's `deploy` section) run
 * the way Deploy runs it: `deno serve` with only --allow-net and
 * --allow-env, configured from the environment, in front of a real core;
 * a Connect call goes through it to the core and back.
 */
import assert from "node:assert/strict";
import { startCore } from "./support/core.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("deno.json's deploy section names edge/deploy.ts, a fetch-style entry", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  assert.deepEqual(config.deploy.runtime, {
    mode: "dynamic",
    entrypoint: "edge/deploy.ts",
  });
  const entry = await import("../edge/deploy.ts");
  assert.equal(typeof entry.default.fetch, "function");
});

Deno.test("edge/deploy.ts under `deno serve` forwards a Connect call to the core from UPSTREAM", async () => {
  await using f = await startCore();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "serve",
      "--allow-net",
      "--allow-env",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "edge/deploy.ts",
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1", UPSTREAM: `http://${f.addr}` },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let seen = "";
    let url: string | undefined;
    while (url === undefined) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`deno serve ended: ${seen}`);
      seen += value;
      url = seen.match(/Listening on (http:\/\/127\.0\.0\.1:\d+)/)?.[1];
    }
    const res = await fetch(`${url}/chat.ChatService/SendMessage`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: "deploy", room: "r", content: "hi" }),
    });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.match(body.messageId, /^msg_\d+$/);
    const page = await fetch(`${url}/`);
    assert.equal(page.status, 200);
    await page.body?.cancel();
  } finally {
    // `deno serve` drains on SIGTERM but the open upstream connection keeps
    // the process alive (Deploy stops isolates itself): kill it.
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel().catch(() => {});
    await stdout;
  }
});
