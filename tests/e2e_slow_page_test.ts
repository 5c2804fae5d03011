/**
 * The page in Chromium too slow for a busy room: while its script is blocked
 * its queue on the core fills (`--slow-consumer drop`), the core stops
 * sending it messages live and, once it reads again, catches it up from
 * history: it gets every message once, and nothing is dropped.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createChatClient } from "../client/rpc.ts";
import { launchChromium, startEdgeStack } from "./fixtures/web_browser.ts";

Deno.test("the page in Chromium too slow for a busy room gets every message once: the core catches it up from history", async () => {
  const browser = await launchChromium();
  const stack = await startEdgeStack({
    aliveIntervalMs: 0,
    queueSize: 4,
    slowConsumer: "drop",
    historySize: 100_000,
  });
  const poster = createChatClient(`127.0.0.1:${stack.core().port}`);
  const total = 5000;
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(30_000);
    const page = await context.newPage();
    await page.goto(`${stack.edgeUrl}/?user=slow&room=busy`);
    await page.locator("#messages li.msg-system").waitFor();
    // The page's script is busy for 6 s: it reads nothing while the room
    // gets 5,000 messages (1.5 MB), so the buffers fill and it falls behind.
    const blocked = page.evaluate(
      "(() => { const t = Date.now(); while (Date.now() < t + 6000) {} })()",
    );
    const pad = "x".repeat(300);
    for (let i = 1; i <= total; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, k) =>
          poster.sendMessage({
            user: "poster",
            room: "busy",
            content: `m${i + k} ${pad}`,
          })),
      );
    }
    await blocked;
    assert.ok(stack.core().snapshot().fellBehind > 0, "it fell behind");
    // The list keeps the newest 500 lines; the cap note counts the rest.
    await page.locator("#messages li.msg-chat", { hasText: `m${total} ` })
      .waitFor();
    const offsets = await page.locator("#messages li[data-offset]")
      .evaluateAll((items) =>
        items.map((item) =>
          Number(
            (item as unknown as { dataset: { offset: string } }).dataset.offset,
          )
        )
      );
    assert.deepEqual(
      offsets,
      Array.from({ length: 500 }, (_, i) => total - 499 + i),
    );
    const dropped = Number(
      await page.getAttribute("#cap-note", "data-dropped") ?? -1,
    );
    // The welcome and 5,000 messages, each once: shown + not shown.
    assert.equal(dropped + 500, total + 1);
    assert.equal(await page.locator("#messages li.msg-local").count(), 0);
    assert.equal(stack.core().snapshot().dropped, 0);
    await context.close();
  } finally {
    poster.close();
    await browser.close();
    await stack.close();
  }
});
