/**
 * The page in real Chromium against the real edge and core, plus the seed's
 * Google grpc-web client from another origin.
 *
 * One test with steps: the steps share one browser and one stack (Chromium
 * takes a while to start on a shared 2-core machine), and every piece is
 * closed in the `finally` so the sanitizers stay on.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import {
  joinRoom,
  launchChromium,
  say,
  startEdgeStack,
  startOtherOrigin,
} from "./fixtures/web_browser.ts";
import { waitFor } from "./fixtures/web_stack.ts";
import type { SubscribeOutcome } from "./fixtures/web_grpcweb_client.ts";
import { createChatClient } from "../client/rpc.ts";

const ARTIFACTS = new URL("../artifacts/", import.meta.url);

/** Polls `check` every 100 ms until it holds, for up to 15 s. */
async function eventually(check: () => Promise<boolean>, what: string) {
  const until = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The line of a message from `user` with `text`, once it shows. */
function line(page: Page, user: string, text: string) {
  return page.locator("#messages li.msg-chat", { hasText: text })
    .filter({ has: page.locator(".user", { hasText: user }) });
}

/** The room offsets of the message lines `page` shows, top to bottom. */
async function shownOffsets(page: Page): Promise<number[]> {
  return (await page.locator("#messages li[data-offset]").evaluateAll((
    items,
  ) =>
    items.map((item) =>
      (item as unknown as { dataset: { offset: string } }).dataset.offset
    )
  )).map(Number);
}

Deno.test("the page in Chromium: chat, bidi, upload, metrics, grpc-web seed client, presence, reconnect", async (t) => {
  const browser = await launchChromium();
  // A durable store, so the restarted core keeps the room's history and epoch.
  const dataDir = await Deno.makeTempDir({ prefix: "e2e-store-" });
  const stack = await startEdgeStack({
    presence: true,
    aliveIntervalMs: 0,
    store: "sqlite",
    dataDir,
  });
  const other = await startOtherOrigin();
  try {
    const context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
    });
    context.setDefaultTimeout(15_000);
    const alice = await context.newPage();
    const bob = await context.newPage();
    const errors: string[] = [];
    // Console errors too: a checker opening the page sees them in DevTools.
    const consoleErrors: string[] = [];
    for (const page of [alice, bob]) {
      page.on("pageerror", (err) => errors.push(err.message));
      page.on("console", (message) => {
        if (message.type() === "error") consoleErrors.push(message.text());
      });
    }

    await t.step(
      "two pages in one room see each other's messages",
      async () => {
        await joinRoom(alice, `${stack.edgeUrl}/`, "alice", "lobby");
        await joinRoom(bob, `${stack.edgeUrl}/`, "bob", "lobby");
        await alice.locator("#messages li.msg-join", { hasText: "bob" })
          .waitFor();
        await say(alice, "hello from alice");
        await line(bob, "alice", "hello from alice").waitFor();
        await say(bob, "hi alice, bob here");
        await line(alice, "bob", "hi alice, bob here").waitFor();
        assert.match(
          await alice.textContent("#status") ?? "",
          /Live in #lobby as alice/,
        );
        // This edge has no development secret: the page runs without a token.
        assert.equal(
          await alice.getAttribute("#token-status", "data-source"),
          "none",
        );
        // Asking for a development token that is off logs nothing.
        assert.deepEqual(consoleErrors, []);
      },
    );

    await t.step(
      "on a 360 px phone nothing overflows sideways",
      async () => {
        const phone = await browser.newContext({
          viewport: { width: 360, height: 740 },
          deviceScaleFactor: 1,
          isMobile: true,
          hasTouch: true,
        });
        phone.setDefaultTimeout(15_000);
        const page = await phone.newPage();
        page.on("pageerror", (err) => errors.push(err.message));
        await joinRoom(
          page,
          `${stack.edgeUrl}/`,
          "a-rather-long-user-name",
          "lobby",
        );
        await say(
          page,
          "a long unbroken word: " + "x".repeat(120) + " and a long line " +
            "of ordinary words that has to wrap on a narrow phone screen",
        );
        await line(page, "a-rather-long-user-name", "ordinary words")
          .waitFor();
        await page.locator('#metrics-chart [data-series="cpu_usage"] polyline')
          .and(page.locator("[points*=',']")).waitFor();
        // A string, run in the page: this file has no DOM types.
        const widths = await page.evaluate(`(() => {
          const doc = document.documentElement;
          const wide = [...document.querySelectorAll("body *")]
            .filter((el) => el.getBoundingClientRect().right > doc.clientWidth)
            .map((el) => el.id || el.className || el.tagName);
          return { scroll: doc.scrollWidth, client: doc.clientWidth, wide };
        })()`) as { scroll: number; client: number; wide: string[] };
        assert.equal(widths.client, 360);
        assert.ok(
          widths.scroll <= widths.client,
          `overflow: ${JSON.stringify(widths)}`,
        );
        assert.deepEqual(widths.wide, []);
        await page.screenshot({
          path: new URL("e2e_phone.png", ARTIFACTS).pathname,
          fullPage: true,
        });
        await phone.close();
      },
    );

    await t.step("bidi Chat over the WebSocket echoes", async () => {
      await alice.fill("#bidi-input", "ping over the socket");
      await alice.click("#bidi-send");
      await alice.locator("#bidi-log li.received", {
        hasText: "Server: Echo: ping over the socket",
      }).waitFor();
      // Chat also broadcasts to the room, so bob sees it as a chat line.
      await line(bob, "alice", "ping over the socket").waitFor();
    });

    await t.step("the metrics chart updates from StreamMetrics", async () => {
      const samples = async () =>
        Number(await alice.getAttribute("#metrics-chart", "data-samples") ?? 0);
      const cpuPoints = () =>
        alice.getAttribute(
          '#metrics-chart [data-series="cpu_usage"] polyline',
          "points",
        );
      await eventually(async () => await samples() > 0, "a first metric");
      const before = { samples: await samples(), points: await cpuPoints() };
      // The core sends about ten metrics per one-second interval.
      await eventually(
        async () => await samples() > before.samples + 5,
        "more metrics",
      );
      // Read apart from the count, the line may already have moved with a
      // batch that came between the two reads: wait for it to move at all.
      await eventually(
        async () => await cpuPoints() !== before.points,
        "the cpu line moves",
      );
      assert.match(
        await alice.textContent('[data-series="memory_usage"] .label') ?? "",
        /^Memory: \d+(\.\d+)? MiB$/,
      );
      // A scale: 0, half and top on the y axis, and a time axis.
      const axis = await alice.locator('[data-series="cpu_usage"] .axis')
        .allTextContents();
      assert.equal(axis.length, 5, axis.join("|"));
      assert.equal(axis[0], "0");
      assert.ok(Number(axis[4 - 2]) > 0, axis.join("|"));
      assert.deepEqual(axis.slice(3), [axis[3], "now"]);
      assert.match(axis[3], /^−\d+ s$/);
    });

    await t.step(
      "every metric row can be charted, and the chart removed",
      async () => {
        const row = alice.locator('#metrics-other [data-metric="rooms"]');
        await row.waitFor();
        assert.match(await row.textContent() ?? "", /^rooms: \d+Chart$/);
        await row.locator("button", { hasText: "Chart" }).click();
        const chart = alice.locator('#metrics-chart [data-series="rooms"]');
        await chart.locator(".label", { hasText: /^rooms: \d+$/ }).waitFor();
        assert.equal(await chart.locator(".axis").count(), 5);
        assert.ok(
          (await chart.locator("polyline").getAttribute("points") ?? "") !== "",
        );
        await row.locator("button", { hasText: "Hide" }).click();
        await chart.waitFor({ state: "detached" });
        const rows = await alice.locator("#metrics-other li button").count();
        assert.ok(rows >= 10, `${rows} rows, each with a button`);
      },
    );

    await t.step("an upload of 1,000 lines reports 1,000", async () => {
      const carol = await context.newPage();
      await joinRoom(carol, `${stack.edgeUrl}/`, "carol", "bulk");
      const lines = Array.from(
        { length: 1000 },
        (_, i) => `bulk line ${i + 1}`,
      );
      await carol.fill("#upload-text", lines.join("\n"));
      await carol.click("#upload-button");
      await carol.locator("#upload-result", { hasText: "Server counted" })
        .waitFor();
      assert.equal(
        await carol.getAttribute("#upload-result", "data-count"),
        "1000",
      );
      assert.equal(
        await carol.getAttribute("#upload-progress", "value"),
        "1000",
      );
      // Carol's own list got the 1,000 lines: it keeps 500 and says so.
      await carol.locator("#cap-note", { hasText: "older not shown" })
        .waitFor().catch(async (err) => {
          // Where it stopped, for a failure in CI.
          const offsets = await shownOffsets(carol);
          throw new Error(
            `${err.message}\n${offsets.length} lines shown, last offset ${
              offsets.at(-1)
            }; status "${await carol.textContent("#status")}"; notes ${
              JSON.stringify(
                await carol.locator("#messages li.msg-local").allTextContents(),
              )
            }; core ${JSON.stringify(stack.core().snapshot())}`,
          );
        });
      assert.equal(await carol.locator("#messages li").count(), 500);
      assert.match(
        await carol.textContent("#cap-note") ?? "",
        /^Showing the newest 500 lines; \d+ older not shown\.$/,
      );
      await carol.screenshot({
        path: new URL("e2e_upload.png", ARTIFACTS).pathname,
      });
      await carol.close();
    });

    await t.step(
      "Google's grpc-web client (text and binary) works cross-origin",
      async () => {
        const seed = await context.newPage();
        seed.on("pageerror", (err) => errors.push(err.message));
        await seed.goto(other.url);
        await seed.waitForFunction(() => "grpcWeb" in globalThis);
        assert.notEqual(new URL(other.url).origin, stack.edgeUrl);
        const subscribe = (format: string, user: string, deadlineMs?: number) =>
          seed.evaluate(
            ([edge, format, user, deadlineMs]) =>
              // deno-lint-ignore no-explicit-any
              (globalThis as any).grpcWeb.subscribe(edge, format, {
                room: "lobby",
                user,
              }, deadlineMs),
            [stack.edgeUrl, format, user, deadlineMs] as const,
          ) as Promise<SubscribeOutcome>;
        const text = await subscribe("text", "seed-text");
        assert.equal(text.error, undefined);
        assert.equal(
          text.messages[0].content,
          "Welcome to room lobby, seed-text!",
        );
        // Binary mode delivers at the end of the stream, so give it a deadline.
        const binary = await subscribe("binary", "seed-binary", 1500);
        assert.equal(
          binary.messages[0]?.content,
          "Welcome to room lobby, seed-binary!",
        );
        assert.equal(binary.status?.code ?? binary.error?.code, 4);
        for (const format of ["text", "binary"]) {
          const id = await seed.evaluate(
            ([edge, format]) =>
              // deno-lint-ignore no-explicit-any
              (globalThis as any).grpcWeb.send(edge, format, {
                room: "lobby",
                user: "seed",
                content: `from grpc-web ${format}`,
              }),
            [stack.edgeUrl, format] as const,
          );
          assert.match(id, /^msg_\d+$/);
          await line(alice, "seed", `from grpc-web ${format}`).waitFor();
        }
        await seed.close();
      },
    );

    await t.step(
      "closing a page removes its subscriber on the core",
      async () => {
        await waitFor(
          () => stack.core().snapshot().subscribers === 2,
          "alice and bob only",
        );
        await bob.close();
        await waitFor(
          () => stack.core().snapshot().subscribers === 1,
          "the core to drop bob",
        );
        await alice.locator("#messages li.msg-leave", { hasText: "bob" })
          .waitFor();
        // The metrics stream reports the same count to the page.
        await alice.locator('[data-metric="subscribers"]', {
          hasText: "subscribers: 1",
        }).waitFor();
        await alice.screenshot({
          path: new URL("e2e_page.png", ARTIFACTS).pathname,
        });
      },
    );

    await t.step(
      "the page reconnects by itself when the stream drops, and says so",
      async () => {
        await stack.stopCore();
        await alice.locator("#messages li.msg-local", {
          hasText: "Connection lost",
        }).waitFor();
        assert.match(await alice.textContent("#status") ?? "", /Reconnecting/);
        // Sent while the core is down: marked, with a Retry button.
        await say(alice, "typed while down");
        const unsent = alice.locator("#messages li.msg-unsent", {
          hasText: "typed while down",
        });
        await unsent.locator("button", { hasText: "Retry" }).waitFor();
        // Keep the page from resubscribing until the room has moved on, so
        // that what it missed must come from the resume.
        await alice.route(
          "**/chat.ChatService/SubscribeMessages",
          (r) => r.abort(),
        );
        // Over plain http the subscription rides the WebSocket bridge
        // instead, which route() does not see: its sockets are dropped
        // before the edge meanwhile (a lost connection, to the page), and
        // pass through again after.
        let holding = true;
        await alice.routeWebSocket(/\/ws$/, (ws) => {
          if (holding) ws.close();
          else ws.connectToServer();
        });
        await stack.restartCore();
        const poster = createChatClient(`127.0.0.1:${stack.core().port}`);
        try {
          for (let i = 1; i <= 3; i++) {
            await poster.sendMessage({
              user: "poster",
              room: "lobby",
              content: `missed ${i}`,
            });
          }
        } finally {
          poster.close();
        }
        await alice.unroute("**/chat.ChatService/SubscribeMessages");
        holding = false;
        // 3 posts, and alice's LEAVE that the core wrote as it stopped.
        await alice.locator("#messages li.msg-local", {
          hasText: "Reconnected: 4 missed message(s) follow.",
        }).waitFor();
        for (let i = 1; i <= 3; i++) {
          await line(alice, "poster", `missed ${i}`).waitFor();
        }
        await alice.locator("#messages li.msg-local", {
          hasText: "Reconnected",
        }).waitFor();
        await alice.locator("#status", { hasText: "Live in #lobby as alice" })
          .waitFor();
        // Retried by itself once the room is back: delivered once, unmarked.
        await line(alice, "alice", "typed while down").waitFor();
        await unsent.waitFor({ state: "detached" });
        await say(alice, "back again");
        await line(alice, "alice", "back again").waitFor();
        assert.equal(await line(alice, "alice", "typed while down").count(), 1);
        // Every room message alice was shown, from her JOIN on: offsets
        // 1, 2, 3, ... with no gap and no duplicate, across the restart.
        const offsets = await shownOffsets(alice);
        assert.ok(offsets.length > 10, String(offsets));
        assert.deepEqual(
          offsets,
          offsets.map((_, i) => i + 1),
        );
      },
    );

    await t.step(
      "a page that joins later is shown the room's recent history",
      async () => {
        const dave = await context.newPage();
        await joinRoom(dave, `${stack.edgeUrl}/`, "dave", "lobby");
        await line(dave, "alice", "hello from alice").waitFor();
        await line(dave, "poster", "missed 3").waitFor();
        await line(dave, "alice", "back again").waitFor();
        // The history, then dave's JOIN: each room line once, in order (the
        // welcome names the room's last offset but is no line of the room).
        const offsets = await shownOffsets(dave);
        assert.ok(offsets.length > 10, String(offsets));
        assert.deepEqual(
          offsets,
          offsets.map((_, i) => offsets[0] + i),
        );
        await dave.close();
      },
    );

    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
    await other.close();
    await stack.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
