/**
 * The page sends a line again with the same idempotency key. (And, second
 * test, by itself while its room stays live, once a core whose store
 * refused it takes it again.) Chromium on the
 * page, the edge in front of a proxy that loses the core's answer to the
 * page's first SendMessage (tests/fixtures/answer_cutting_proxy.ts). The
 * core stored the line; the page hears only that its connection broke,
 * marks the line unsent, resumes the room and sends it again by itself. The
 * core answers that repeat with the stored message: the line shows once and
 * is stored once.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import {
  type CoreServer,
  startCoreServer,
  type StartOptions,
} from "../server/server.ts";
import type { EdgeConfig } from "../edge/config.ts";
import { createMemoryStore } from "../server/store/memory_store.ts";
import type { HistoryStore } from "../server/rooms/history_store.ts";
import {
  type AnswerCuttingProxy,
  answerCuttingProxy,
} from "./fixtures/answer_cutting_proxy.ts";
import { startEdge } from "./fixtures/edge_stack.ts";
import {
  joinRoom,
  launchChromium,
  openPage,
  say,
} from "./fixtures/web_browser.ts";
import { eventually, roomContents } from "./support/core.ts";

async function counter(metricsPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`))
    .text();
  return Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
}

/**
 * A core (memory store, metrics on) behind a proxy that cuts its first
 * answer on `path`, an edge in front of the proxy, and a page in Chromium;
 * all closed after `fn`.
 */
async function withAnswerCut(
  path: string,
  fn: (
    s: {
      core: CoreServer;
      proxy: AnswerCuttingProxy;
      edge: { url: string };
      page: Page;
      errors: string[];
    },
  ) => Promise<void>,
): Promise<void> {
  let proxy: AnswerCuttingProxy | undefined;
  await withPageStack(
    { store: "memory", metricsPort: 0 },
    {},
    (s) => fn({ ...s, proxy: proxy! }),
    (port) => proxy = answerCuttingProxy(port, path),
  );
}

/**
 * A core (port 0, no "alive" lines, `coreOptions`), an edge in front of it
 * (`edgeConfig`), or in front of what `front` puts before the core, and a
 * page in Chromium; all closed after `fn`.
 */
async function withPageStack(
  coreOptions: StartOptions,
  edgeConfig: Partial<EdgeConfig>,
  fn: (
    s: {
      core: CoreServer;
      edge: { url: string };
      page: Page;
      errors: string[];
    },
  ) => Promise<void>,
  front?: (corePort: number) => { addr: string; close(): Promise<void> },
): Promise<void> {
  const core = await startCoreServer({
    port: 0,
    aliveIntervalMs: 0,
    ...coreOptions,
  });
  const before = front?.(core.port);
  const edge = startEdge(
    `http://${before?.addr ?? `127.0.0.1:${core.port}`}`,
    edgeConfig,
  );
  const browser = await launchChromium();
  try {
    const { context, page, errors } = await openPage(browser);
    await fn({ core, edge, page, errors });
    await context.close();
  } finally {
    await browser.close();
    await edge.close();
    await before?.close();
    await core.shutdown(500);
  }
}

Deno.test("the page sends a line whose answer was lost again by itself with its key: it shows once and is stored once", async () => {
  await withAnswerCut("/chat.ChatService/SendMessage", async (
    { core, proxy, edge, page, errors },
  ) => {
    await joinRoom(page, `${edge.url}/`, "alice", "lost");
    await say(page, "answer lost");
    const lines = page.locator("#messages li.msg-chat", {
      hasText: "answer lost",
    });
    await lines.first().waitFor();
    // The answer was cut: the room resumes, and the line is sent again
    // with its key, which the core answers as a repeat.
    await eventually(() => proxy.cut, "the proxy to cut the answer");
    await page.locator("#messages li.msg-local", { hasText: "Reconnected" })
      .waitFor();
    const until = Date.now() + 15_000;
    while (
      await counter(core.metricsPort!, "chat_idempotent_repeats_total") !== 1
    ) {
      assert.ok(Date.now() < until, "the page's repeat never reached the core");
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.locator("#messages li.msg-unsent").waitFor({
      state: "detached",
    });
    await say(page, "after");
    await page.locator("#messages li.msg-chat", { hasText: "after" })
      .waitFor();
    assert.equal(await lines.count(), 1);
    assert.deepEqual(errors, []);

    // The room holds it once.
    assert.deepEqual(await roomContents(core.port, "lost"), [
      "answer lost",
      "after",
    ]);
  });
});

Deno.test("the page's Chat panel sends a line whose echo was lost again with its key, ahead of the next one: each is stored once", async () => {
  await withAnswerCut("/chat.ChatService/Chat", async (
    { core, proxy, edge, page, errors },
  ) => {
    await joinRoom(page, `${edge.url}/`, "alice", "bidi");
    const sayOnStream = async (content: string) => {
      await page.fill("#bidi-input", content);
      await page.click("#bidi-send");
    };
    await sayOnStream("echo lost");
    // Stored and broadcast; its echo cut off with the connection.
    await page.locator("#bidi-log li.ended", {
      hasText: "1 line(s) not echoed",
    }).waitFor();
    assert.ok(proxy.cut, "the proxy cut the echo");
    await page.locator("#messages li.msg-chat", { hasText: "echo lost" })
      .waitFor();
    await page.locator("#status", { hasText: "Live in #bidi as alice" })
      .waitFor();
    await sayOnStream("after");
    await page.locator("#bidi-log li.received", { hasText: "Echo: after" })
      .waitFor();
    assert.equal(
      await page.locator("#bidi-log li.received", {
        hasText: "Echo: echo lost",
      }).count(),
      1,
    );
    assert.deepEqual(await roomContents(core.port, "bidi"), [
      "echo lost",
      "after",
    ]);
    assert.equal(
      await page.locator("#messages li.msg-chat", { hasText: "echo lost" })
        .count(),
      1,
    );
    assert.deepEqual(errors, []);
  });
});

Deno.test("the page's Chat panel sends the lines of a stream it ended on pagehide ahead of the next line, even before that stream's end came in", async () => {
  await withPageStack({ store: "memory" }, {}, async (
    { core, edge, page, errors },
  ) => {
    await joinRoom(page, `${edge.url}/`, "alice", "hid");
    // In one task: a line, the page hidden (its stream cancelled, the
    // line not echoed), and the next line on a new stream, before the
    // old stream's end is heard (as a page restored from the back/forward
    // cache runs what waited).
    await page.evaluate(`(() => {
      const input = document.getElementById("bidi-input");
      const form = document.getElementById("bidi-form");
      input.value = "before hiding";
      form.requestSubmit();
      dispatchEvent(new PageTransitionEvent("pagehide", { persisted: true }));
      input.value = "after";
      form.requestSubmit();
    })()`);
    for (const line of ["before hiding", "after"]) {
      await page.locator("#bidi-log li.received", { hasText: `Echo: ${line}` })
        .waitFor();
    }
    assert.deepEqual(await roomContents(core.port, "hid"), [
      "before hiding",
      "after",
    ]);
    assert.deepEqual(errors, []);
  });
});

/**
 * A memory store whose appends fail while `down` is set: the core answers
 * UNAVAILABLE ("history store unavailable") and its streams stay up.
 */
function storeThatFails() {
  const base = createMemoryStore({ size: 100, ttlMs: 0 });
  const state = { down: false, refused: 0 };
  const refuse = () => {
    state.refused++;
    throw new Error("disk full (a test's store)");
  };
  const store = new Proxy(base, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (name === "appendSync" && typeof value === "function") {
        return (...args: Parameters<NonNullable<HistoryStore["appendSync"]>>) =>
          state.down ? refuse() : value.apply(target, args);
      }
      if (name === "append" && typeof value === "function") {
        return (...args: Parameters<HistoryStore["append"]>) =>
          state.down
            ? Promise.reject(new Error("disk full (a test's store)"))
            : value.apply(target, args);
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store, state };
}

Deno.test("the page sends a line the core's store refused again by itself once the store is back, while its room stays live", async () => {
  const { store, state } = storeThatFails();
  try {
    await withPageStack({ historyStore: store }, {}, async (
      { edge, page, errors },
    ) => {
      await joinRoom(page, `${edge.url}/`, "alice", "outage");
      state.down = true;
      await say(page, "during the outage");
      const unsent = page.locator("#messages li.msg-unsent", {
        hasText: "during the outage",
      });
      await unsent.waitFor();
      assert.match(
        await unsent.textContent() ?? "",
        /history store unavailable/,
      );
      // The store comes back; nobody clicks Retry and the room never dropped.
      state.down = false;
      await page.locator("#messages li.msg-chat", {
        hasText: "during the outage",
      }).waitFor();
      await unsent.waitFor({ state: "detached" });
      assert.equal(
        await page.locator("#messages li.msg-local", { hasText: "Reconnected" })
          .count(),
        0,
        "the room resumed: the retry was not the resume's",
      );
      assert.ok(state.refused >= 1);
      await say(page, "after");
      await page.locator("#messages li.msg-chat", { hasText: "after" })
        .waitFor();
      assert.equal(
        await page.locator("#messages li.msg-chat", {
          hasText: "during the outage",
        }).count(),
        1,
      );
      assert.deepEqual(errors, []);
    });
  } finally {
    await store.close();
  }
});

Deno.test("the page's Chat panel keeps a line the rate limit refused and sends it again with the next one; a line refused for itself is listed, not sent again", async () => {
  // Auth off: the limit counts per connection, the edge's one to the core;
  // and a message limit a long line goes over (refused for itself).
  await withPageStack({ store: "memory", rateLimit: 1, rateBurst: 2 }, {
    maxMessageBytes: 1024,
  }, async ({ core, edge, page, errors }) => {
    await joinRoom(page, `${edge.url}/`, "alice", "limited");
    const sayOnStream = async (content: string) => {
      await page.fill("#bidi-input", content);
      await page.click("#bidi-send");
    };
    // Joining took tokens (the room's and the metrics' streams): the
    // bucket fills again to its burst of 2.
    await new Promise((r) => setTimeout(r, 2500));
    for (const line of ["a", "b", "c"]) await sayOnStream(line);
    await page.locator("#bidi-log li.ended", { hasText: "code 8" }).waitFor();
    await page.locator("#bidi-log li.ended", {
      hasText: "1 line(s) not echoed: sent again with the next one",
    }).waitFor();
    assert.deepEqual(await roomContents(core.port, "limited"), ["a", "b"]);
    await new Promise((r) => setTimeout(r, 2500));
    const echoedAndStored = async (line: string, room: string[]) => {
      await sayOnStream(line);
      await page.locator("#bidi-log li.received", { hasText: `Echo: ${line}` })
        .waitFor();
      assert.deepEqual(await roomContents(core.port, "limited"), room);
    };
    await echoedAndStored("d", ["a", "b", "c", "d"]);
    // Over the edge's 1 KiB: RESOURCE_EXHAUSTED with no retry hint. Sent
    // again, it would be refused again, and every line after it with it.
    await sayOnStream(`long ${"x".repeat(1500)}`);
    await page.locator("#bidi-log li.ended", {
      hasText: `1 line(s) not echoed and not sent again: "long ${
        "x".repeat(35)
      }…"`,
    }).waitFor();
    await new Promise((r) => setTimeout(r, 1500));
    await echoedAndStored("e", ["a", "b", "c", "d", "e"]);
    assert.deepEqual(errors, []);
  });
});
