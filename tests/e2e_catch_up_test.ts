/**
 * The page's catch-up after a new epoch, in Chromium against the real edge
 * and core, with the room subscriptions' WebSockets routed through the test
 * so that the one fetching a new epoch's history can be held or cut off.
 *
 * After a resume lands in a new epoch the page resubscribes at once for what
 * the new history holds. That fetch may itself find the history lost again
 * (a core restarted meanwhile), or be cut off: either is news the page must
 * tell, as it tells any resume.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { fromBinary } from "@bufbuild/protobuf";
import type { WebSocketRoute } from "playwright-core";
import { createChatClient } from "../client/rpc.ts";
import { SubscribeRequestSchema } from "../gen/chat_pb.ts";
import { decodeFrame } from "../protocol/ws_bridge.ts";
import {
  joinRoom,
  launchChromium,
  openPage,
  startEdgeStack,
} from "./fixtures/web_browser.ts";

const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";

/**
 * Routes the page's bridge sockets to the edge. A room subscription whose
 * request names another epoch than the one before it (a fetch of a new
 * epoch's history) takes the next of `actions`: "hold" connects it only
 * when `release()` is called; "fail" closes it.
 */
function routeSubscriptions(actions: ("hold" | "fail")[]) {
  let previous = "";
  let held: (() => void) | undefined;
  let wake = () => {};
  const route = (ws: WebSocketRoute) => {
    const early: (string | Buffer)[] = [];
    let server: WebSocketRoute | undefined;
    const connect = () => {
      server = ws.connectToServer();
      for (const message of early.splice(0)) server.send(message);
    };
    ws.onMessage((message) => {
      if (server) return server.send(message);
      early.push(message);
      // The header, then the request: enough to decide, once.
      if (early.length !== 2) return;
      const path = (JSON.parse(early[0] as string) as { path: string }).path;
      if (path !== SUBSCRIBE) return connect();
      const { epoch } = fromBinary(
        SubscribeRequestSchema,
        decodeFrame(new Uint8Array(early[1] as Buffer)).payload,
      );
      const fetchingNew = previous !== "" && epoch !== "" &&
        epoch !== previous;
      if (epoch !== "") previous = epoch;
      const action = fetchingNew ? actions.shift() : undefined;
      if (action === "fail") {
        ws.close({ code: 1011, reason: "cut off by the test" });
      } else if (action === "hold") {
        held = connect;
        wake();
      } else connect();
    });
  };
  return {
    route,
    /** Resolves once a subscription is held. */
    held: () => new Promise<void>((r) => held ? r() : wake = r),
    release: () => held?.(),
  };
}

Deno.test("the page tells of a new epoch found while it fetched a new epoch's history, and of the resume after that fetch was cut off", async () => {
  const browser = await launchChromium();
  // Memory: each restart of the core starts the room over (a new epoch).
  const stack = await startEdgeStack({ aliveIntervalMs: 0, store: "memory" });
  const post = async (content: string) => {
    const client = createChatClient(`127.0.0.1:${stack.core().port}`);
    try {
      await client.sendMessage({ user: "bob", room: "epochs", content });
    } finally {
      client.close();
    }
  };
  try {
    const { context, page, errors } = await openPage(browser, 10_000);
    const routed = routeSubscriptions(["hold", "fail"]);
    await page.routeWebSocket(/\/ws$/, routed.route);
    await post("epoch 1");
    await joinRoom(page, `${stack.edgeUrl}/`, "alice", "epochs");
    await page.locator("#messages li.msg-chat", { hasText: "epoch 1" })
      .waitFor();
    await stack.stopCore();
    await page.locator("#status", { hasText: "Reconnecting in" }).waitFor();
    await stack.restartCore();
    await post("epoch 2");
    // The resume finds a new epoch; the fetch of its history is held
    // while the core restarts again: that history is lost too.
    await routed.held();
    await stack.stopCore();
    await stack.restartCore();
    await post("epoch 3");
    routed.release();
    // The fetch finds a third epoch: said. Its own fetch is cut off: the
    // page says so, then how the resume went.
    const notes = page.locator("#messages li.msg-local");
    await notes.filter({ hasText: "Reconnected: 1 missed message(s) follow." })
      .waitFor();
    await page.locator("#messages li.msg-chat", { hasText: "epoch 3" })
      .waitFor();
    await page.locator("#status", { hasText: "Live in #epochs as alice" })
      .waitFor();
    const said = await notes.allTextContents();
    assert.equal(
      said.filter((l) => l.includes("history started over")).length,
      2,
      said.join("\n"),
    );
    const lost = said.findLastIndex((l) => l.includes("Connection lost"));
    assert.ok(lost >= 0, said.join("\n"));
    assert.match(said[lost + 1], /Reconnected: 1 missed message\(s\) follow/);
    const chat = await page.locator("#messages li.msg-chat")
      .allTextContents();
    assert.equal(chat.filter((l) => l.endsWith("epoch 3")).length, 1);
    assert.equal(stack.core().snapshot().subscribers, 1);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await browser.close();
    await stack.close();
  }
});
