/**
 * The page and the browser's back/forward cache, in Chromium with the cache
 * on (Playwright turns it off by default).
 *
 * Navigating away from the page may keep it, frozen, in the cache; "Back"
 * shows it again without loading it. Its streams end at `pagehide`, so the
 * core drops its subscribers while it is away; shown again, they resume where
 * they stopped: the room's missed messages once each, the metrics feed live.
 * Before, a restored page said "Live" and received nothing. A development
 * token that expired while the page was away is renewed before the streams
 * open again.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { signDevToken } from "../auth/dev_token.ts";
import { createChatClient } from "../client/rpc.ts";
import {
  type EdgeStack,
  joinRoom,
  launchChromium,
  say,
  startEdgeStack,
  startOtherOrigin,
} from "./fixtures/web_browser.ts";
import { waitFor } from "./fixtures/web_stack.ts";
import { SECRET } from "./support/auth.ts";

/** The page, the stack behind it, and a page elsewhere to go to. */
interface Visit {
  page: Page;
  stack: EdgeStack;
  /** Posts each of `contents` to `room` as bob, straight to the core. */
  post(room: string, ...contents: string[]): Promise<void>;
  /**
   * Goes to another origin, runs `meanwhile`, and goes back; fails unless
   * the page came back from the back/forward cache (the test would mean
   * nothing otherwise).
   */
  awayAndBack(meanwhile: () => Promise<void>): Promise<void>;
}

/** Chromium with its back/forward cache on, a stack, and a fresh page. */
async function withPage(
  stackOptions: Parameters<typeof startEdgeStack>,
  run: (visit: Visit) => Promise<void>,
): Promise<void> {
  const browser = await launchChromium({ backForwardCache: true });
  const stack = await startEdgeStack(...stackOptions);
  const other = await startOtherOrigin();
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(10_000);
    const page = await context.newPage();
    // Each `pageshow`'s `persisted`: true when restored from the cache.
    await page.addInitScript(() => {
      const shows: boolean[] = [];
      Object.assign(globalThis, { pageShows: shows });
      addEventListener("pageshow", (event) => {
        shows.push((event as unknown as { persisted: boolean }).persisted);
      });
    });
    const shows = () =>
      page.evaluate(() =>
        (globalThis as unknown as { pageShows: boolean[] }).pageShows
      );
    await run({
      page,
      stack,
      async post(room, ...contents) {
        const client = createChatClient(`127.0.0.1:${stack.core().port}`);
        try {
          for (const content of contents) {
            await client.sendMessage({ user: "bob", room, content });
          }
        } finally {
          client.close();
        }
      },
      async awayAndBack(meanwhile) {
        await page.goto(other.url);
        // Away: the room subscription, the metrics feed and the Chat
        // stream ended, so the core holds nothing for the page.
        await waitFor(
          () => stack.core().snapshot().subscribers === 0,
          "the core to drop the hidden page's subscriber",
        );
        await meanwhile();
        await page.goBack({ waitUntil: "commit" });
        await page.waitForFunction(() =>
          (globalThis as unknown as { pageShows: boolean[] }).pageShows
            .length === 2
        );
        assert.deepEqual(await shows(), [false, true]);
      },
    });
    await context.close();
  } finally {
    await browser.close();
    await other.close();
    await stack.close();
  }
}

/** The last offset of `room` at the core on `port`: its messages stored. */
async function lastOffset(port: number, room: string): Promise<number> {
  const client = createChatClient(`127.0.0.1:${port}`);
  try {
    const stream = client.subscribeMessages({ room, user: "counter" });
    const welcome = await new Promise<{ offset: bigint }>((resolve, reject) => {
      stream.once("data", resolve);
      stream.once("error", reject);
    });
    stream.cancel();
    return Number(welcome.offset);
  } finally {
    client.close();
  }
}

/** Lines of the page's message list. */
function lines(page: Page): Promise<string[]> {
  return page.locator("#messages li").allTextContents();
}

Deno.test("a page restored from the back/forward cache resumes its streams: missed messages once each, metrics live, none of its streams left open while away", async () => {
  await withPage(
    [{ aliveIntervalMs: 0 }],
    async ({ page, stack, post, awayAndBack }) => {
      const errors: string[] = [];
      page.on("pageerror", (err) => errors.push(err.message));
      await joinRoom(page, `${stack.edgeUrl}/`, "alice", "bf");
      await page.locator("#metrics-status", { hasText: "live" }).waitFor();
      await say(page, "before leaving");
      await page.locator("#messages li.msg-chat", { hasText: "before leaving" })
        .waitFor();
      // The Chat panel's stream is open too: it must not keep the page out of
      // the cache.
      await page.fill("#bidi-input", "echo me");
      await page.click("#bidi-send");
      await page.locator("#bidi-log li.received", { hasText: "echo me" })
        .waitFor();
      assert.equal(stack.core().snapshot().subscribers, 1);

      await awayAndBack(() =>
        post("bf", "while away 1", "while away 2", "while away 3")
      );
      await page.locator("#messages li.msg-local", {
        hasText: "Reconnected: 3 missed message(s) follow.",
      }).waitFor();
      await page.locator("#messages li.msg-chat", { hasText: "while away 3" })
        .waitFor();
      await page.locator("#status", { hasText: "Live in #bf as alice" })
        .waitFor();
      await page.locator("#metrics-status", { hasText: "live" }).waitFor();
      assert.equal(stack.core().snapshot().subscribers, 1);

      // Live again, and each message shown once.
      await post("bf", "after");
      await page.locator("#messages li.msg-chat", { hasText: "after" })
        .waitFor();
      const chat = (await lines(page)).filter((l) =>
        /before leaving|while away|after$/.test(l)
      );
      assert.equal(chat.length, 5, chat.join("\n"));
      for (const n of [1, 2, 3]) {
        assert.equal(
          chat.filter((l) => l.endsWith(`while away ${n}`)).length,
          1,
        );
      }
      // The Chat panel opens a new stream on its next send.
      await page.fill("#bidi-input", "echo again");
      await page.click("#bidi-send");
      await page.locator("#bidi-log li.received", { hasText: "echo again" })
        .waitFor();
      assert.deepEqual(errors, []);
    },
  );
});

Deno.test("a page restored from the back/forward cache renews a development token that expired while it was away", async () => {
  await withPage([
    // No leeway: the core refuses the first token the moment it expires.
    { jwtSecret: SECRET, jwtLeewaySeconds: 0, aliveIntervalMs: 0 },
    { devJwtSecret: SECRET },
  ], async ({ page, stack, awayAndBack }) => {
    // The edge's development tokens last an hour; the first one here lasts
    // six seconds, and the page stays away until it has expired.
    const expires = Date.now() + 6_000;
    let tokens = 0;
    await page.route("**/auth/dev-token?*", async (route) => {
      tokens++;
      if (tokens > 1) return route.continue();
      await route.fulfill({
        contentType: "application/json",
        body: JSON.stringify({
          token: await signDevToken({
            secret: SECRET,
            user: "alice",
            ttl: Math.floor((expires - Date.now()) / 1000),
          }),
        }),
      });
    });
    await joinRoom(page, `${stack.edgeUrl}/`, "alice", "renew");
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    // A room with a message is kept while nobody is in it (an empty one
    // starts over), so the resume below can say "nothing missed".
    await say(page, "hello");
    await page.locator("#messages li.msg-chat", { hasText: "hello" })
      .waitFor();
    assert.equal(tokens, 1);
    await page.unroute("**/auth/dev-token?*");
    // Renewals asked for after the return: one. The renewal timed before
    // the page left comes due while it is cached; it must not run beside
    // the return's own.
    let renewals = 0;
    page.on("request", (request) => {
      if (request.url().includes("/auth/dev-token")) renewals++;
    });
    await awayAndBack(async () => {
      await new Promise((resolve) =>
        setTimeout(resolve, expires - Date.now() + 1_500)
      );
      renewals = 0;
    });
    await page.locator("#messages li.msg-local", {
      hasText: "Reconnected: nothing missed.",
    }).waitFor();
    await page.locator("#status", { hasText: "Live in #renew as alice" })
      .waitFor();
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    assert.doesNotMatch((await lines(page)).join("\n"), /refused/);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    assert.equal(renewals, 1);
  });
});

Deno.test("a page restored from the back/forward cache resumes its streams with the token it has when the development token's renewal gets no answer", async () => {
  await withPage([
    { jwtSecret: SECRET, aliveIntervalMs: 0 },
    { devJwtSecret: SECRET },
  ], async ({ page, stack, awayAndBack }) => {
    await joinRoom(page, `${stack.edgeUrl}/`, "alice", "stalled");
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    // A room with a message is kept while nobody is in it.
    await say(page, "hello");
    await page.locator("#messages li.msg-chat", { hasText: "hello" })
      .waitFor();
    // The renewal's request is never answered (a connection that died
    // while the page was away, say): the page must not wait for ever.
    await page.route("**/auth/dev-token?*", () => {});
    await awayAndBack(() => Promise.resolve());
    // Shown and waiting: the status says so, not that the page is hidden.
    await page.locator("#status", {
      hasText: "Back: renewing the development token",
    }).waitFor();
    await page.locator("#messages li.msg-local", {
      hasText: "Could not renew the development token",
    }).waitFor();
    await page.locator("#messages li.msg-local", {
      hasText: "Reconnected: nothing missed.",
    }).waitFor();
    await page.locator("#status", { hasText: "Live in #stalled as alice" })
      .waitFor();
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    assert.equal(stack.core().snapshot().subscribers, 1);
    await page.unrouteAll({ behavior: "ignoreErrors" });
  });
});

Deno.test("a page restored to a room that was forgotten meanwhile (empty when everyone left) shows what was said since, once", async () => {
  await withPage(
    [{ aliveIntervalMs: 0 }],
    async ({ page, stack, post, awayAndBack }) => {
      // Nothing was ever said in the room: once the page leaves, the core
      // forgets it, and the posts below start it over in a new epoch.
      await joinRoom(page, `${stack.edgeUrl}/`, "alice", "quiet");
      await awayAndBack(() => post("quiet", "said since 1", "said since 2"));
      await page.locator("#messages li.msg-local", {
        hasText: "up to 2 recent message(s) follow",
      }).waitFor();
      await page.locator("#messages li.msg-chat", { hasText: "said since 2" })
        .waitFor();
      await page.locator("#status", { hasText: "Live in #quiet as alice" })
        .waitFor();
      const said = (await lines(page)).filter((l) => l.includes("said since"));
      assert.deepEqual(said.map((l) => l.replace(/^.*bob/, "")), [
        "said since 1",
        "said since 2",
      ]);
    },
  );
});

Deno.test("a page that goes into the back/forward cache during an upload says how the upload ended when shown again, and uploaded again stores only the rest", async () => {
  await withPage(
    [{ aliveIntervalMs: 0 }],
    async ({ page, stack, awayAndBack }) => {
      const errors: string[] = [];
      page.on("pageerror", (err) => errors.push(err.message));
      await joinRoom(page, `${stack.edgeUrl}/`, "alice", "upload");
      // Chromium closes an open WebSocket as the page goes into the cache;
      // enough lines that the upload is still sending then.
      const many = Array.from(
        { length: 20_000 },
        (_, i) => `line ${i} ${"x".repeat(200)}`,
      ).join("\n");
      await page.locator("#upload-text").evaluate(
        (area, text) => (area as unknown as { value: string }).value = text,
        many,
      );
      await page.click("#upload-button");
      await page.locator("#upload-result", { hasText: /^Sent \d+ of/ })
        .waitFor();
      await awayAndBack(() => Promise.resolve());
      // It ended (its socket closed under it): the page says so and the
      // button works again, instead of "Sent N of 20000…" for ever.
      await page.locator("#upload-result.failed", {
        hasText: "Upload failed",
      }).waitFor();
      assert.equal(await page.isEnabled("#upload-button"), true);
      await page.locator("#status", { hasText: "Live in #upload as alice" })
        .waitFor();
      const stored = await lastOffset(stack.core().port, "upload");
      assert.ok(stored > 0 && stored < 20_000, `${stored} stored`);
      // The same lines again: the ones stored before are counted, not
      // stored twice (their idempotency keys are the failed upload's).
      await page.click("#upload-button");
      // 4 MB through the bridge: 8-11 s on this 2-core machine, over
      // waitFor's default of 10 s.
      await page.locator("#upload-result", {
        hasText: "Server counted 20000 messages.",
      }).waitFor({ timeout: 60_000 });
      assert.equal(await lastOffset(stack.core().port, "upload"), 20_000);
      // Other lines are another upload.
      await page.fill("#upload-text", "one\ntwo");
      await page.click("#upload-button");
      await page.locator("#upload-result", {
        hasText: "Server counted 2 messages.",
      }).waitFor();
      assert.equal(await lastOffset(stack.core().port, "upload"), 20_002);
      assert.deepEqual(errors, []);
    },
  );
});
