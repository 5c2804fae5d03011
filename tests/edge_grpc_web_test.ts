/**
 * gRPC-Web through the edge with connect-web's gRPC-Web transport, against
 * the real core: unary, server streaming, errors, deadlines, cancellation.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService, MessageType } from "../gen/chat_pb.ts";
import { startCoreEdge, waitUntil } from "./fixtures/edge_stack.ts";

function clientFor(stack: { url: string; fetch: typeof fetch }) {
  return createClient(
    ChatService,
    createGrpcWebTransport({ baseUrl: stack.url, fetch: stack.fetch }),
  );
}

Deno.test("edge gRPC-Web: SendMessage returns msg_N and the subscriber receives it", async () => {
  await using stack = await startCoreEdge();
  const client = clientFor(stack);
  const ctl = new AbortController();
  const stream = client.subscribeMessages({ room: "lobby", user: "ann" }, {
    signal: ctl.signal,
  });
  const it = stream[Symbol.asyncIterator]();
  const welcome = (await it.next()).value!;
  assert.equal(welcome.content, "Welcome to room lobby, ann!");
  assert.equal(welcome.type, MessageType.SYSTEM);

  const sent = await client.sendMessage({
    user: "bob",
    room: "lobby",
    content: "hello",
  });
  assert.match(sent.messageId, /^msg_\d+$/);
  assert.ok(sent.timestamp);

  const got = (await it.next()).value!;
  assert.equal(got.content, "hello");
  assert.equal(got.user, "bob");
  ctl.abort();
  await assert.rejects(
    it.next(),
    (e) => ConnectError.from(e).code === Code.Canceled,
  );
});

Deno.test("edge gRPC-Web: missing fields come back as INVALID_ARGUMENT", async () => {
  await using stack = await startCoreEdge();
  await assert.rejects(
    clientFor(stack).sendMessage({ user: "", room: "lobby", content: "x" }),
    (e) =>
      e instanceof ConnectError && e.code === Code.InvalidArgument &&
      e.rawMessage.length > 0,
  );
});

Deno.test("edge gRPC-Web: StreamMetrics streams metrics at the requested interval", async () => {
  await using stack = await startCoreEdge();
  const ctl = new AbortController();
  const names: string[] = [];
  for await (
    const m of clientFor(stack).streamMetrics({
      instanceId: "t",
      intervalSeconds: 1,
    }, { signal: ctl.signal })
  ) {
    names.push(m.name);
    assert.ok(m.timestamp);
    if (names.length >= 2) break;
  }
  assert.equal(names.length, 2);
});

Deno.test("edge gRPC-Web: client abort removes the subscriber on the core", async () => {
  await using stack = await startCoreEdge();
  const client = clientFor(stack);
  const ctl = new AbortController();
  const it = client.subscribeMessages({ room: "r", user: "u" }, {
    signal: ctl.signal,
  })[Symbol.asyncIterator]();
  await it.next();
  await waitUntil(
    () => stack.core.snapshot().subscribers === 1,
    3000,
    "subscriber",
  );
  ctl.abort();
  await assert.rejects(it.next());
  await waitUntil(
    () => stack.core.snapshot().subscribers === 0,
    3000,
    "unsubscribe",
  );
});

Deno.test("edge gRPC-Web: timeoutMs ends a quiet stream with DEADLINE_EXCEEDED", async () => {
  await using stack = await startCoreEdge();
  const t0 = performance.now();
  const it = clientFor(stack).subscribeMessages({ room: "quiet", user: "u" }, {
    timeoutMs: 300,
  })[
    Symbol.asyncIterator
  ]();
  assert.equal((await it.next()).value!.content, "Welcome to room quiet, u!");
  await assert.rejects(
    it.next(),
    (e) => ConnectError.from(e).code === Code.DeadlineExceeded,
  );
  assert.ok(performance.now() - t0 < 3000);
  await waitUntil(
    () => stack.core.snapshot().subscribers === 0,
    3000,
    "unsubscribe",
  );
});

Deno.test("edge gRPC-Web: a stream outlives any edge-side timer when no deadline is set", async () => {
  await using stack = await startCoreEdge();
  const client = clientFor(stack);
  const ctl = new AbortController();
  const it = client.subscribeMessages({ room: "long", user: "u" }, {
    signal: ctl.signal,
  })[Symbol.asyncIterator]();
  await it.next();
  await new Promise((r) => setTimeout(r, 1500));
  await client.sendMessage({ user: "v", room: "long", content: "still here" });
  assert.equal((await it.next()).value!.content, "still here");
  ctl.abort();
  await assert.rejects(it.next());
});

Deno.test("edge gRPC-Web: core down answers UNAVAILABLE", async () => {
  await using stack = await startCoreEdge();
  await stack.core.shutdown(100);
  await assert.rejects(
    clientFor(stack).sendMessage({ user: "a", room: "b", content: "c" }),
    (e) => ConnectError.from(e).code === Code.Unavailable,
  );
});
