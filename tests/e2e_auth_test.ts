/**
 * The page in Chromium against a core with auth on (`jwtSecret`) behind an
 * edge with a development secret: the page gets a token from
 * `/auth/dev-token` when the token field is empty, uses a pasted one when
 * given, sends it over gRPC-Web and in the WebSocket bridge's header frame,
 * and stops (saying why) when the core refuses it. The metrics stream waits
 * for the join's token instead of asking again without one.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Page, Route } from "playwright-core";
import {
  type EdgeStack,
  launchChromium,
  openPage,
  startEdgeStack,
} from "./fixtures/web_browser.ts";
import { signDevToken } from "../auth/dev_token.ts";
import { hs256, SECRET } from "./support/auth.ts";

async function join(
  page: Page,
  url: string,
  user: string,
  room: string,
  token = "",
) {
  await page.goto(`${url}/`);
  await page.fill("#user", user);
  await page.fill("#room", room);
  await page.fill("#token", token);
  await page.click("#join");
}

Deno.test("the page in Chromium with auth on: development token, pasted token, WebSocket bridge, refusal", async () => {
  const browser = await launchChromium();
  const stack = await startEdgeStack(
    { jwtSecret: SECRET, aliveIntervalMs: 0 },
    { devJwtSecret: SECRET },
  );
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(15_000);
    const errors: string[] = [];
    const alice = await context.newPage();
    const bob = await context.newPage();
    const mallory = await context.newPage();
    for (const page of [alice, bob, mallory]) {
      page.on("pageerror", (err) => errors.push(err.message));
    }

    // Before a join there is no token: the core refuses the metrics stream,
    // and the page says so once instead of asking again every few seconds.
    // Over plain http the page's streams ride the WebSocket bridge (each
    // call's first frame names its method); over HTTP/2 they are gRPC-Web.
    let metricsCalls = 0;
    alice.on("request", (request) => {
      if (request.url().endsWith("/StreamMetrics")) metricsCalls++;
    });
    alice.on("websocket", (socket) => {
      socket.on("framesent", (frame) => {
        if (
          typeof frame.payload === "string" &&
          frame.payload.includes('"/chat.ChatService/StreamMetrics"')
        ) metricsCalls++;
      });
    });
    await alice.goto(`${stack.edgeUrl}/`);
    await alice.locator("#metrics-status", {
      hasText: "off until you join with a valid token",
    }).waitFor();
    assert.match(
      await alice.textContent("#metrics-status") ?? "",
      /missing token/,
    );
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(metricsCalls, 1);

    // No token typed: the page asks the edge for a development token, and
    // opens the metrics stream with it at once.
    await alice.fill("#user", "alice");
    await alice.fill("#room", "secure");
    await alice.click("#join");
    await alice.locator("#messages li.msg-system", {
      hasText: "Welcome to room secure, alice!",
    }).waitFor();
    assert.equal(
      await alice.getAttribute("#token-status", "data-source"),
      "development",
    );
    // A pasted token wins over the edge's.
    await join(
      bob,
      stack.edgeUrl,
      "bob",
      "secure",
      await hs256({ sub: "bob" }),
    );
    await bob.locator("#status", { hasText: "Live in #secure as bob" })
      .waitFor();
    assert.equal(
      await bob.getAttribute("#token-status", "data-source"),
      "pasted",
    );

    await alice.fill("#message-input", "signed hello");
    await alice.click("#send");
    await bob.locator("#messages li.msg-chat", { hasText: "signed hello" })
      .waitFor();
    assert.equal(await alice.locator("#messages li.msg-unsent").count(), 0);

    // The bridge carries the token in its header frame: Chat echoes, and
    // the broadcast reaches bob as alice.
    await alice.fill("#bidi-input", "over the socket");
    await alice.click("#bidi-send");
    await alice.locator("#bidi-log li.received", {
      hasText: "Server: Echo: over the socket",
    }).waitFor();
    await bob.locator("#messages li.msg-chat", { hasText: "over the socket" })
      .filter({ has: bob.locator(".user", { hasText: "alice" }) }).waitFor();
    await alice.fill("#upload-text", "one\ntwo\nthree");
    await alice.click("#upload-button");
    await alice.locator("#upload-result", { hasText: "Server counted 3" })
      .waitFor();

    // The metrics stream needs a token too; the page's is used once joined.
    await alice.locator("#metrics-status", { hasText: "live" }).waitFor();
    assert.equal(metricsCalls, 2);

    // Bob's token pasted by someone joining as mallory: refused, no retry loop.
    await join(
      mallory,
      stack.edgeUrl,
      "mallory",
      "secure",
      await hs256({ sub: "bob" }),
    );
    await mallory.locator("#messages li.msg-local", {
      hasText: "The server refused the subscription",
    }).waitFor();
    assert.match(
      await mallory.textContent("#messages") ?? "",
      /permission_denied|PERMISSION_DENIED|may not|not allowed|denied/i,
    );
    assert.match(await mallory.textContent("#status") ?? "", /Not joined/);
    // Sending as mallory with bob's token is refused, shown with a Retry.
    await mallory.fill("#message-input", "sneaky");
    await mallory.click("#send");
    await mallory.locator("#messages li.msg-unsent", { hasText: "sneaky" })
      .locator("button", { hasText: "Retry" }).waitFor();

    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
    await stack.close();
  }
});

/** A page signed in as alice with a short development token, and its edge. */
interface ShortTokenPage {
  page: Page;
  stack: EdgeStack;
  /** Requests for a development token so far. */
  asked(): number;
  /** Joins `room` as alice; resolves once the welcome shows. */
  joinAs(room: string): Promise<void>;
}

/**
 * A page against a core with auth on and no leeway (the core ends streams
 * the moment their token expires) behind an edge with a development secret.
 * The page's first development token lasts `ttl` seconds (the edge's last an
 * hour); every later request for one goes to `renewal`.
 */
async function withShortToken(
  ttl: number,
  renewal: (route: Route) => Promise<void>,
  run: (t: ShortTokenPage) => Promise<void>,
): Promise<void> {
  const browser = await launchChromium();
  const stack = await startEdgeStack(
    { jwtSecret: SECRET, jwtLeewaySeconds: 0, aliveIntervalMs: 0 },
    { devJwtSecret: SECRET },
  );
  try {
    const { context, page, errors } = await openPage(browser);
    let asked = 0;
    await page.route("**/auth/dev-token?*", async (route) => {
      if (++asked > 1) return renewal(route);
      await route.fulfill({
        contentType: "application/json",
        body: JSON.stringify({
          token: await signDevToken({ secret: SECRET, user: "alice", ttl }),
        }),
      });
    });
    await run({
      page,
      stack,
      asked: () => asked,
      async joinAs(room) {
        await join(page, stack.edgeUrl, "alice", room);
        await page.locator("#messages li.msg-system", {
          hasText: `Welcome to room ${room}, alice!`,
        }).waitFor();
      },
    });
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
    await stack.close();
  }
}

/** The page's message list as one text. */
async function listText(page: Page): Promise<string> {
  return (await page.locator("#messages li").allTextContents()).join("\n");
}

/** Sends `text` and waits for it in the list. */
async function sendAndSee(page: Page, text: string): Promise<void> {
  await page.fill("#message-input", text);
  await page.click("#send");
  await page.locator("#messages li.msg-chat", { hasText: text }).waitFor();
}

Deno.test("the page renews a development token before it expires: its streams, ended by the core at the old token's expiry, go on with the new one", async () => {
  // Four seconds, renewed halfway by the edge.
  await withShortToken(4, (route) => route.continue(), async (t) => {
    const { page } = t;
    await t.joinAs("long");
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    // Past the first token's expiry: the core ended both streams, and the
    // page opened them again with the renewed token.
    await page.waitForTimeout(5_500);
    assert.equal(t.asked(), 2);
    await sendAndSee(page, "after the first token");
    await page.locator("#status", { hasText: "Live in #long as alice" })
      .waitFor();
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    assert.doesNotMatch(await listText(page), /refused/);
    assert.equal(t.stack.core().snapshot().subscribers, 1);
  });
});

Deno.test("a development token's renewal that fails is tried again every 15 s, said once, not in a loop", async () => {
  // Every renewal fails (the edge unreachable, as far as the page can tell).
  await withShortToken(
    2,
    (route) => route.abort("connectionrefused"),
    async (t) => {
      const { page } = t;
      await t.joinAs("loop");
      await page.waitForTimeout(5_000);
      // One renewal halfway, then none until 15 s later; the expired
      // token's refusal is not final while its renewal is still to come:
      // the streams back off and try again.
      assert.equal(t.asked(), 2);
      const text = await listText(page);
      assert.equal(text.split("Could not renew").length - 1, 1, text);
      assert.doesNotMatch(text, /refused/);
      await page.locator("#status", { hasText: "Reconnecting" }).waitFor();
    },
  );
});

Deno.test("a development token's renewal that brings no new token is not tried again in a loop (a failed join, an edge without tokens now)", async () => {
  // After the first token the edge gives none (restarted without a
  // development secret), and a join as bob fails.
  await withShortToken(2, async (route) => {
    if (route.request().url().includes("user=bob")) {
      return route.fulfill({ status: 500 });
    }
    await route.fulfill({ status: 204 });
  }, async (t) => {
    const { page } = t;
    await page.addInitScript(() => {
      const g = globalThis as unknown as { timers: number };
      const original = globalThis.setTimeout;
      g.timers = 0;
      globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
        g.timers++;
        return original(...args);
      }) as typeof setTimeout;
    });
    await t.joinAs("idle");
    await page.waitForTimeout(4_000);
    // One renewal halfway (no token: the page goes on with the old one
    // until the core refuses it), not one every few milliseconds.
    assert.equal(t.asked(), 2);
    // A join that fails leaves no renewal for alice's expired token behind.
    await page.fill("#user", "bob");
    await page.click("#join");
    await page.locator("#messages li", { hasText: "Could not get a token" })
      .waitFor();
    const timers = () =>
      page.evaluate(() => (globalThis as unknown as { timers: number }).timers);
    const before = await timers();
    await page.waitForTimeout(2_000);
    const after = await timers();
    assert.ok(after - before < 20, `${after - before} timers in 2 s`);
    assert.equal(t.asked(), 3);
  });
});

Deno.test("a development token's renewal that lands after the core ended the streams at expiry: they go on with the new token, not refused", async () => {
  // The renewal (at one second) gets its answer three seconds later, two
  // after the core refused the token.
  await withShortToken(2, async (route) => {
    await new Promise((done) => setTimeout(done, 3_000));
    await route.continue();
  }, async (t) => {
    const { page } = t;
    await t.joinAs("late");
    await page.waitForTimeout(4_500);
    assert.equal(t.asked(), 2);
    await page.locator("#status", { hasText: "Live in #late as alice" })
      .waitFor();
    await page.locator("#metrics-status", { hasText: "live" }).waitFor();
    await sendAndSee(page, "after the late renewal");
    assert.doesNotMatch(await listText(page), /refused/);
  });
});
