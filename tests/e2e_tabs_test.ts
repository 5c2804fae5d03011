/**
 * Many tabs of the page in one Chromium profile, on plain http (HTTP/1.1).
 *
 * Chromium opens at most six HTTP/1.1 connections per host, and each open
 * gRPC-Web response holds one: when each tab's room subscription and metrics
 * feed were fetch streams, three tabs took all six, a fourth tab never
 * loaded, and a tab that had to resubscribe waited for ever (the e2e upload
 * step failed that way now and then). The page now sends its streams over
 * the WebSocket bridge on HTTP/1.x; `?streams=grpc-web` still takes the
 * gRPC-Web path, which is checked here too.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { BrowserContext, Page } from "playwright-core";
import {
  joinRoom,
  launchChromium,
  say,
  startEdgeStack,
} from "./fixtures/web_browser.ts";
import { testCertificate } from "./support/auth.ts";

/** Joins as `joinRoom()` does, then waits for the metrics feed too. */
async function join(page: Page, url: string, user: string, room: string) {
  await joinRoom(page, url, user, room);
  await page.locator("#metrics-status", { hasText: "live" }).waitFor();
}

/**
 * Eight tabs of the page in `context`, each joined to room "tabs" and
 * showing `route` in `<body data-streams>`; what they report is collected.
 */
async function openTabs(
  context: BrowserContext,
  url: string,
  route: string,
) {
  const seen = {
    errors: [] as string[],
    fetchStreams: [] as string[],
    sockets: [] as string[],
    tabs: [] as Page[],
  };
  for (let i = 0; i < 8; i++) {
    const tab = await context.newPage();
    tab.on("pageerror", (err) => seen.errors.push(err.message));
    tab.on("request", (r) => {
      if (/\/(SubscribeMessages|StreamMetrics)$/.test(r.url())) {
        seen.fetchStreams.push(r.url());
      }
    });
    tab.on("websocket", (ws) => seen.sockets.push(ws.url()));
    await join(tab, url, `tab${i}`, "tabs");
    assert.equal(await tab.getAttribute("body", "data-streams"), route);
    seen.tabs.push(tab);
  }
  return seen;
}

Deno.test("eight tabs of the page on plain http all load, join, stream and send (streams on the WebSocket bridge); ?streams=grpc-web streams over fetch", async () => {
  const browser = await launchChromium();
  const stack = await startEdgeStack({ aliveIntervalMs: 0 });
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(10_000);
    const { errors, fetchStreams, tabs } = await openTabs(
      context,
      `${stack.edgeUrl}/`,
      "websocket",
    );
    // Two streams per tab, sixteen in all, and none of them took a
    // connection from the browser's pool.
    assert.deepEqual(fetchStreams, []);
    assert.equal(stack.core().snapshot().subscribers, 8);
    await say(tabs[7], "from the eighth tab");
    for (const tab of tabs) {
      await tab.locator("#messages li.msg-chat", {
        hasText: "from the eighth tab",
      }).waitFor();
    }

    // The gRPC-Web route, asked for: the subscription is a fetch stream.
    const web = await context.newPage();
    web.on("pageerror", (err) => errors.push(err.message));
    const webStreams: string[] = [];
    web.on("request", (r) => {
      if (r.url().endsWith("/SubscribeMessages")) webStreams.push(r.url());
    });
    await join(web, `${stack.edgeUrl}/?streams=grpc-web`, "web", "tabs");
    assert.equal(
      await web.getAttribute("body", "data-streams"),
      "grpc-web",
    );
    assert.equal(webStreams.length, 1);
    await say(tabs[0], "to the gRPC-Web tab");
    await web.locator("#messages li.msg-chat", {
      hasText: "to the gRPC-Web tab",
    }).waitFor();

    // Closing tabs ends their subscribers on the core, whichever the route.
    await web.close();
    for (const tab of tabs.splice(1)) await tab.close();
    const deadline = Date.now() + 10_000;
    while (stack.core().snapshot().subscribers !== 1) {
      assert.ok(Date.now() < deadline, "the closed tabs' subscribers remain");
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
    await stack.close();
  }
});

Deno.test("over HTTPS the page comes over HTTP/2 and its streams are gRPC-Web fetches, eight tabs streaming at once", async () => {
  const dir = await Deno.makeTempDir();
  const { cert, key } = await testCertificate(dir);
  const browser = await launchChromium();
  const stack = await startEdgeStack({ aliveIntervalMs: 0 }, {}, { cert, key });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    context.setDefaultTimeout(10_000);
    const { errors, fetchStreams, sockets, tabs } = await openTabs(
      context,
      `${stack.edgeUrl}/`,
      "grpc-web",
    );
    assert.equal(
      await tabs[0].evaluate(() =>
        (performance.getEntriesByType("navigation")[0] as unknown as {
          nextHopProtocol: string;
        }).nextHopProtocol
      ),
      "h2",
    );
    assert.equal(fetchStreams.length, 16);
    assert.deepEqual(sockets, []);
    await say(tabs[7], "over one connection");
    for (const tab of tabs) {
      await tab.locator("#messages li.msg-chat", {
        hasText: "over one connection",
      }).waitFor();
    }
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
    await stack.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a WebSocket the edge refuses (--max-websockets-per-ip) is named on the page, not left a bare close code", async () => {
  const browser = await launchChromium();
  // One socket per address: the page's metrics feed takes it at load, so
  // the room subscription of its join is refused (and retried).
  const stack = await startEdgeStack({ aliveIntervalMs: 0 }, {
    maxWebSocketsPerIp: 1,
  });
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(10_000);
    const page = await context.newPage();
    await page.goto(`${stack.edgeUrl}/`);
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    await page.fill("#user", "alice");
    await page.fill("#room", "limited");
    await page.click("#join");
    await page.locator("#messages li.msg-local", {
      hasText: "could not open the WebSocket to the edge (refused: too " +
        "many sockets from this address",
    }).waitFor();
    await page.locator("#status", { hasText: "Reconnecting" }).waitFor();
    assert.equal(stack.core().snapshot().subscribers, 0);
    await context.close();
  } finally {
    await browser.close();
    await stack.close();
  }
});
