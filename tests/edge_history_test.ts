/**
 * The history fields through the edge, against the real core: gRPC-Web and
 * Connect (JSON and binary) via connect-web, raw Connect JSON as curl would
 * send it, and the WebSocket bridge. Each one posts, reads the offset back,
 * asks for history and resumes with epoch + since_offset.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import {
  ChatService,
  type Message,
  MessageSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { openWsCall } from "../web/ws_call.ts";
import { startCoreEdge } from "./fixtures/edge_stack.ts";
import { connectJsonBody, readConnectStream } from "./fixtures/edge_raw.ts";
import { startBridgeStack } from "./fixtures/web_stack.ts";

/** The first `n` messages of a stream, then the stream is cancelled. */
async function first<T>(
  stream: AsyncIterable<T>,
  n: number,
  ctl: AbortController,
): Promise<T[]> {
  const out: T[] = [];
  for await (const m of stream) {
    out.push(m);
    if (out.length === n) break;
  }
  ctl.abort();
  return out;
}

const transports = {
  "gRPC-Web": (url: string, f: typeof fetch) =>
    createGrpcWebTransport({ baseUrl: url, fetch: f }),
  "Connect JSON": (url: string, f: typeof fetch) =>
    createConnectTransport({ baseUrl: url, fetch: f }),
  "Connect binary": (url: string, f: typeof fetch) =>
    createConnectTransport({ baseUrl: url, fetch: f, useBinaryFormat: true }),
};

for (const [kind, transport] of Object.entries(transports)) {
  Deno.test(`edge ${kind}: offsets, epochs, history and resume reach the client`, async () => {
    await using stack = await startCoreEdge();
    const client = createClient(ChatService, transport(stack.url, stack.fetch));
    for (let i = 1; i <= 4; i++) {
      const sent = await client.sendMessage({
        user: "ann",
        room: "e",
        content: `m${i}`,
      });
      assert.equal(sent.offset, BigInt(i));
    }
    const ctl = new AbortController();
    const [welcome, ...replayed] = await first(
      client.subscribeMessages({ room: "e", user: "w", history: 2 }, {
        signal: ctl.signal,
      }),
      3,
      ctl,
    );
    assert.equal(welcome.offset, 4n);
    assert.match(welcome.epoch, /^[0-9a-f]{16}$/);
    assert.deepEqual(replayed.map((m) => [m.content, m.offset, m.epoch]), [
      ["m3", 3n, welcome.epoch],
      ["m4", 4n, welcome.epoch],
    ]);
    const ctl2 = new AbortController();
    const [, ...resumed] = await first(
      client.subscribeMessages({
        room: "e",
        user: "w",
        epoch: welcome.epoch,
        sinceOffset: 1n,
      }, { signal: ctl2.signal }),
      4,
      ctl2,
    );
    assert.deepEqual(resumed.map((m) => m.offset), [2n, 3n, 4n]);
  });
}

Deno.test("edge Connect JSON by hand: offsets are JSON strings, sinceOffset/epoch/history are read", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(`${stack.url}/chat.ChatService/SendMessage`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "ann", room: "j", content: "hi" }),
  });
  const sent = await res.json();
  assert.equal(sent.offset, "1");
  await stack.fetch(`${stack.url}/chat.ChatService/SendMessage`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "ann", room: "j", content: "again" }),
  }).then((r) => r.body?.cancel());
  const subscribe = (request: Record<string, unknown>) =>
    stack.fetch(`${stack.url}/chat.ChatService/SubscribeMessages`, {
      method: "POST",
      headers: {
        "content-type": "application/connect+json",
        "connect-timeout-ms": "300",
      },
      body: connectJsonBody([request]),
    }).then(readConnectStream);
  const { messages, end } = await subscribe({
    room: "j",
    user: "w",
    history: 5,
  });
  assert.equal(end.error?.code, "deadline_exceeded");
  const [welcome, ...rest] = messages as Record<string, unknown>[];
  assert.equal(welcome.offset, "2");
  assert.equal(typeof welcome.epoch, "string");
  assert.deepEqual(rest.map((m) => [m.content, m.offset, m.epoch]), [
    ["hi", "1", welcome.epoch],
    ["again", "2", welcome.epoch],
  ]);
  const again = await subscribe({
    room: "j",
    user: "w",
    epoch: welcome.epoch,
    sinceOffset: "1",
  });
  assert.deepEqual(
    (again.messages as Record<string, unknown>[]).map((m) => m.offset),
    ["2", "2"],
  );
});

Deno.test("createWebSocketBridge() carries history and resume: offsets and epochs on the wire", async () => {
  const stack = await startBridgeStack();
  try {
    const post = openWsCall(stack.wsUrl, {
      path: "/chat.ChatService/UploadMessages",
    });
    for (const content of ["a", "b", "c"]) {
      post.send(
        toBinary(
          MessageSchema,
          create(MessageSchema, { user: "u", room: "ws", content }),
        ),
      );
    }
    post.closeSend();
    for await (const _ of post.messages) { /* the count */ }
    assert.equal((await post.status).code, 0);

    const read = async (request: Parameters<typeof create>[1]) => {
      const call = openWsCall(stack.wsUrl, {
        path: "/chat.ChatService/SubscribeMessages",
      });
      call.send(
        toBinary(
          SubscribeRequestSchema,
          create(SubscribeRequestSchema, request as never),
        ),
      );
      call.closeSend();
      const got: Message[] = [];
      for await (const bytes of call.messages) {
        got.push(fromBinary(MessageSchema, bytes));
        if (got.length === 4) break;
      }
      call.cancel();
      await call.status;
      return got;
    };
    const [welcome, ...history] = await read({
      room: "ws",
      user: "w",
      history: 3,
    });
    assert.equal(welcome.offset, 3n);
    assert.deepEqual(history.map((m) => [m.content, m.offset, m.epoch]), [
      ["a", 1n, welcome.epoch],
      ["b", 2n, welcome.epoch],
      ["c", 3n, welcome.epoch],
    ]);
    const call = openWsCall(stack.wsUrl, {
      path: "/chat.ChatService/SubscribeMessages",
    });
    call.send(
      toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, {
          room: "ws",
          user: "w",
          epoch: welcome.epoch,
          sinceOffset: 2n,
        }),
      ),
    );
    call.closeSend();
    const it = call.messages[Symbol.asyncIterator]();
    const w = fromBinary(MessageSchema, (await it.next()).value!);
    const next = fromBinary(MessageSchema, (await it.next()).value!);
    assert.deepEqual([w.offset, next.content, next.offset], [3n, "c", 3n]);
    call.cancel();
    await call.status;
  } finally {
    await stack.close();
  }
});
