/**
 * The page in Chromium shows what other users write as text, with the layout
 * intact: markup, a 256-character name with no space, a long word, RTL and
 * emoji, and a 64 KiB message, at phone and desktop widths.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createChatClient } from "../client/rpc.ts";
import { launchChromium, startEdgeStack } from "./fixtures/web_browser.ts";

const MARKUP = "<img src=x onerror='globalThis.pwned=1'><b>bold</b>";
const LONG_NAME = "N".repeat(256);

Deno.test("the page in Chromium shows hostile names and text as text, nothing wider than the list", async () => {
  const browser = await launchChromium();
  const stack = await startEdgeStack({ aliveIntervalMs: 0 });
  const poster = createChatClient(`127.0.0.1:${stack.core().port}`);
  try {
    const room = "hostile";
    for (
      const [user, content] of [
        [MARKUP, "a name with markup"],
        [LONG_NAME, "said by the long name"],
        ["word", "W".repeat(3000)],
        ["rtl", "مرحبا hello עולם 👨‍👩‍👧‍👦 " + "😀".repeat(100)],
        ["big", "B ".repeat(32 * 1024)],
      ]
    ) await poster.sendMessage({ user, room, content });
    const errors: string[] = [];
    for (const [width, height] of [[360, 640], [1280, 800]]) {
      const context = await browser.newContext({
        viewport: { width, height },
      });
      context.setDefaultTimeout(15_000);
      const page = await context.newPage();
      page.on("pageerror", (err) => errors.push(err.message));
      await page.goto(`${stack.edgeUrl}/?user=reader&room=${room}`);
      await page.locator("#messages li.msg-chat", { hasText: "B B B" })
        .waitFor();
      assert.equal(
        await page.locator("#messages .user", { hasText: MARKUP }).count(),
        1,
      );
      assert.equal(await page.locator("#messages img, #messages b").count(), 0);
      // A string, run in the page: this file has no DOM types.
      const layout = await page.evaluate(`(() => {
        const doc = document.documentElement;
        const list = document.getElementById("messages");
        const box = list.getBoundingClientRect();
        // Out of the list's box, or a text squeezed to a sliver beside a name.
        const outside = [...list.querySelectorAll(".content, .user")]
          .filter((el) => {
            const r = el.getBoundingClientRect();
            if (r.width === 0) return false; // a line with no user
            return r.left < box.left || r.right > box.right ||
              (el.className === "content" && r.width < 60);
          })
          .map((el) => el.className + ": " + el.textContent.slice(0, 20));
        return {
          page: [doc.scrollWidth, doc.clientWidth],
          list: [list.scrollWidth, list.clientWidth],
          outside,
          pwned: globalThis.pwned ?? null,
        };
      })()`) as {
        page: number[];
        list: number[];
        outside: string[];
        pwned: unknown;
      };
      const at = `at ${width} px: ${JSON.stringify(layout)}`;
      assert.equal(layout.pwned, null, at);
      assert.ok(layout.page[0] <= layout.page[1], at);
      assert.ok(layout.list[0] <= layout.list[1], at);
      assert.deepEqual(layout.outside, [], at);
      await context.close();
    }
    assert.deepEqual(errors, []);
  } finally {
    poster.close();
    await browser.close();
    await stack.close();
  }
});
