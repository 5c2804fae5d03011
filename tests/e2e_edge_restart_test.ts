/**
 * A deploy of the edge, as the page lives it: the edge process (edge/main.ts,
 * as `deno task serve:edge` runs it) stops on SIGTERM and a new one starts on
 * the same port, in front of the same core, with the page open in Chromium.
 *
 * The page's streams ride the WebSocket bridge over plain http; the stopping
 * edge ends them UNAVAILABLE ("edge is shutting down"), the page retries, and
 * once the new edge listens the room resumes from its cursor: what was posted
 * meanwhile shows once, and a line typed while no edge was up is sent again
 * by itself and shows once.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createChatClient } from "../client/rpc.ts";
import { startCoreServer } from "../server/server.ts";
import { spawnEdgeMain } from "./fixtures/edge_main.ts";
import { freePort } from "./support/core_process.ts";
import {
  joinRoom,
  launchChromium,
  openPage,
  say,
} from "./fixtures/web_browser.ts";

/** edge/main.ts (Deno Deploy's permissions) on `port`, once it listens. */
async function startEdgeProcess(port: number, corePort: number) {
  const { child, lines } = await spawnEdgeMain(corePort, {
    port,
    stderr: "inherit",
    env: { LOG_FORMAT: "off" },
  });
  // Read on, so that the child never blocks on a full pipe.
  const drained = (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })();
  return {
    async stop() {
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0);
      await drained;
    },
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await drained.catch(() => {});
    },
  };
}

Deno.test("the page rides a restart of the edge: streams resume, what was posted meanwhile shows once, a line typed while it was down is sent again by itself", async () => {
  const core = await startCoreServer({ port: 0, aliveIntervalMs: 0 });
  const port = freePort();
  let edge = await startEdgeProcess(port, core.port);
  const browser = await launchChromium();
  const post = async (content: string) => {
    const client = createChatClient(`127.0.0.1:${core.port}`);
    try {
      await client.sendMessage({ user: "bob", room: "deploy", content });
    } finally {
      client.close();
    }
  };
  try {
    const { context, page, errors } = await openPage(browser);
    await joinRoom(page, `http://127.0.0.1:${port}/`, "alice", "deploy");
    await say(page, "before the deploy");
    await page.locator("#messages li.msg-chat", {
      hasText: "before the deploy",
    }).waitFor();
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();

    await edge.stop();
    await page.locator("#messages li.msg-local", {
      hasText: "edge is shutting down",
    }).waitFor();
    await post("posted during the deploy 1");
    await post("posted during the deploy 2");
    await say(page, "typed during the deploy");
    await page.locator("#messages li.msg-unsent", {
      hasText: "typed during the deploy",
    }).waitFor();

    edge = await startEdgeProcess(port, core.port);
    await page.locator("#messages li.msg-local", {
      hasText: "Reconnected: 2 missed message(s) follow.",
    }).waitFor();
    await page.locator("#messages li.msg-chat", {
      hasText: "typed during the deploy",
    }).waitFor();
    await page.locator("#status", { hasText: "Live in #deploy as alice" })
      .waitFor();
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    assert.equal(await page.locator("#messages li.msg-unsent").count(), 0);
    const chat = (await page.locator("#messages li.msg-chat")
      .allTextContents()).map((l) => l.replace(/^.*?(alice|bob)/, "$1: "));
    assert.deepEqual(chat, [
      "alice: before the deploy",
      "bob: posted during the deploy 1",
      "bob: posted during the deploy 2",
      "alice: typed during the deploy",
    ]);
    assert.equal(core.snapshot().subscribers, 1);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
    await edge.kill();
    await core.shutdown(100);
  }
});
