/**
 * The page's client with its server streams on the WebSocket bridge
 * (web/bridge_transport.ts), run in Deno (its WebSocket and fetch are the
 * browser's APIs) against a real edge and core: messages arrive decoded,
 * unary calls still take gRPC-Web, a refusal is a ConnectError with the
 * core's code, and aborting ends the core's subscriber.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/chat_pb.ts";
import { createBridgeStreamTransport } from "../web/bridge_transport.ts";
import { createChatClient, streamsOver } from "../web/rpc.ts";
import { bridgeUrl } from "../web/ws_call.ts";
import { startEdgeStack } from "./fixtures/web_browser.ts";
import { waitFor } from "./fixtures/web_stack.ts";

function pageClient(edgeUrl: string, token = "") {
  return createChatClient(
    edgeUrl,
    () => token,
    "websocket",
    bridgeUrl(new URL(edgeUrl)),
  );
}

Deno.test("streamsOver() takes the bridge unless the page came over HTTP/2 or HTTP/3, or was told", () => {
  assert.equal(streamsOver(null, "http/1.1"), "websocket");
  assert.equal(streamsOver(null, ""), "websocket");
  assert.equal(streamsOver(null, undefined), "websocket");
  assert.equal(streamsOver(null, "h2"), "grpc-web");
  assert.equal(streamsOver(null, "h3"), "grpc-web");
  assert.equal(streamsOver("grpc-web", "http/1.1"), "grpc-web");
  assert.equal(streamsOver("websocket", "h2"), "websocket");
  assert.equal(streamsOver("other", "h2"), "grpc-web");
});

Deno.test("the page's client over the bridge: a subscription gets the welcome and each message sent meanwhile, abort ends the subscriber", async () => {
  const stack = await startEdgeStack({ aliveIntervalMs: 0 });
  try {
    const client = pageClient(stack.edgeUrl);
    const life = new AbortController();
    const got: string[] = [];
    const reading = (async () => {
      try {
        for await (
          const m of client.subscribeMessages({ room: "br", user: "ann" }, {
            signal: life.signal,
          })
        ) got.push(m.content);
      } catch (err) {
        return ConnectError.from(err);
      }
    })();
    await waitFor(() => got.length === 1, "the welcome");
    assert.match(got[0], /Welcome to room br, ann!/);
    assert.equal(stack.core().snapshot().subscribers, 1);
    for (const content of ["one", "two"]) {
      const sent = await client.sendMessage({
        room: "br",
        user: "ann",
        content,
      });
      assert.notEqual(sent.messageId, "");
    }
    await waitFor(() => got.length === 3, "both messages");
    assert.deepEqual(got.slice(1), ["one", "two"]);
    life.abort();
    const err = await reading;
    assert.equal(err?.code, Code.Canceled);
    await waitFor(
      () => stack.core().snapshot().subscribers === 0,
      "the core dropped the subscriber",
    );
  } finally {
    await stack.close();
  }
});

Deno.test("the page's client over the bridge: the core's refusal is a ConnectError with its code and message; a deadline ends the stream", async () => {
  const stack = await startEdgeStack({ aliveIntervalMs: 0 });
  try {
    const client = pageClient(stack.edgeUrl);
    const refused = await (async () => {
      try {
        for await (
          const _ of client.subscribeMessages({ room: "", user: "ann" })
        ) { /* nothing comes */ }
      } catch (err) {
        return ConnectError.from(err);
      }
    })();
    assert.equal(refused?.code, Code.InvalidArgument);
    assert.match(refused?.rawMessage ?? "", /room/);
    const late = await (async () => {
      let n = 0;
      try {
        for await (
          const _ of client.streamMetrics({ instanceId: "t" }, {
            timeoutMs: 300,
          })
        ) n++;
      } catch (err) {
        return { n, err: ConnectError.from(err) };
      }
    })();
    assert.equal(late?.err.code, Code.DeadlineExceeded);
    await waitFor(
      () => stack.core().snapshot().activeStreams === 0,
      "no stream left on the core",
    );
  } finally {
    await stack.close();
  }
});

Deno.test("the page's client over the bridge: a refusal's trailers are the ConnectError's metadata, as on gRPC-Web (retry-after-ms of a rate limit)", async () => {
  const stack = await startEdgeStack({
    aliveIntervalMs: 0,
    rateLimit: 1,
    rateBurst: 2,
  });
  try {
    const client = pageClient(stack.edgeUrl);
    // Each subscription takes a token of the bucket: the third is refused.
    for (let i = 0; i < 2; i++) {
      const life = new AbortController();
      for await (
        const _ of client.subscribeMessages({ room: "rl", user: "ann" }, {
          signal: life.signal,
        })
      ) break;
      life.abort();
    }
    const refused = await (async () => {
      try {
        for await (
          const _ of client.subscribeMessages({ room: "rl", user: "ann" })
        ) { /* nothing comes */ }
      } catch (err) {
        return ConnectError.from(err);
      }
    })();
    assert.equal(refused?.code, Code.ResourceExhausted);
    const hint = /retry after (\d+) ms/.exec(refused?.rawMessage ?? "");
    assert.ok(hint, refused?.rawMessage);
    assert.equal(refused?.metadata.get("retry-after-ms"), hint[1]);
  } finally {
    await stack.close();
  }
});

Deno.test("the page's client over the bridge: an abort's reason and a failing request stream end the call with their own error, as on gRPC-Web", async () => {
  const stack = await startEdgeStack({ aliveIntervalMs: 0 });
  try {
    const url = bridgeUrl(new URL(stack.edgeUrl));
    const transport = createBridgeStreamTransport(
      url,
      createGrpcWebTransport({ baseUrl: stack.edgeUrl }),
      () => ({}),
    );
    const client = createClient(ChatService, transport);
    const failure = async (signal: AbortSignal, abort?: () => void) => {
      try {
        for await (
          const _ of client.streamMetrics({ instanceId: "t" }, { signal })
        ) abort?.();
      } catch (err) {
        return ConnectError.from(err);
      }
    };
    // Aborted before the call, and while it runs: the reason is the error.
    const before = new AbortController();
    before.abort(new ConnectError("gave up", Code.DeadlineExceeded));
    const early = await failure(before.signal);
    assert.equal(early?.code, Code.DeadlineExceeded);
    assert.equal(early?.rawMessage, "gave up");
    const during = new AbortController();
    const late = await failure(
      during.signal,
      () => during.abort(new Error("tab hidden")),
    );
    assert.equal(late?.code, Code.Canceled);
    assert.equal(late?.rawMessage, "tab hidden");
    // A plain abort() is still Canceled.
    const plain = new AbortController();
    const cancelled = await failure(plain.signal, () => plain.abort());
    assert.equal(cancelled?.code, Code.Canceled);

    // The request stream throws: its error, not a cancel by the client.
    const response = await transport.stream(
      ChatService.method.streamMetrics,
      undefined,
      undefined,
      undefined,
      (async function* () {
        yield* [];
        throw new Error("no request to send");
      })(),
      undefined,
    );
    const thrown = await (async () => {
      try {
        for await (const _ of response.message) { /* none */ }
      } catch (err) {
        return ConnectError.from(err);
      }
    })();
    assert.equal(thrown?.rawMessage, "no request to send");
    assert.notEqual(thrown?.code, Code.Canceled);
    await waitFor(
      () => stack.core().snapshot().activeStreams === 0,
      "no stream left on the core",
    );
  } finally {
    await stack.close();
  }
});
