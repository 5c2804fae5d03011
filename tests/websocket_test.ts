/**
 * The WebSocket bridge end to end: ws client -> edge bridge -> HTTP/2 upstream -> core.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  MessageSchema,
  MessageType,
  SubscribeRequestSchema,
  UploadResponseSchema,
} from "../gen/chat_pb.ts";
import { openWsCall, type WsCall } from "../web/ws_call.ts";
import { startBidiChat, uploadLines } from "../web/bridge_client.ts";
import { createWebSocketBridge } from "../edge/websocket.ts";
import type { Upstream, UpstreamStatus } from "../edge/upstream/types.ts";
import { encodeFrame, FLAG_DATA } from "../protocol/ws_bridge.ts";
import { startBridgeStack, waitFor } from "./fixtures/web_stack.ts";

const CHAT = "/chat.ChatService/Chat";
const UPLOAD = "/chat.ChatService/UploadMessages";
const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";

function post(content: string, room = "ws-room") {
  return toBinary(
    MessageSchema,
    create(MessageSchema, {
      user: "tester",
      room,
      content,
      type: MessageType.CHAT,
    }),
  );
}

async function collect(call: WsCall) {
  const messages = [];
  for await (const bytes of call.messages) {
    messages.push(fromBinary(MessageSchema, bytes));
  }
  return { messages, status: await call.status };
}

Deno.test("createWebSocketBridge() carries bidi Chat: an echo per message, OK after half-close", async () => {
  const stack = await startBridgeStack();
  try {
    const call = openWsCall(stack.wsUrl, { path: CHAT });
    call.send(post("one"));
    call.send(post("two"));
    const first = await call.messages[Symbol.asyncIterator]().next();
    assert.deepEqual(
      fromBinary(MessageSchema, first.value!).content,
      "Echo: one",
    );
    call.send(post("three"));
    call.closeSend();
    const { messages, status } = await collect(call);
    assert.deepEqual(messages.map((m) => m.content), [
      "Echo: two",
      "Echo: three",
    ]);
    assert.deepEqual(messages[0].user, "Server");
    assert.deepEqual(messages[0].type, MessageType.SYSTEM);
    assert.deepEqual(status.code, 0);
  } finally {
    await stack.close();
  }
});

Deno.test("createWebSocketBridge() carries UploadMessages: 1,000 messages, one count", async () => {
  const stack = await startBridgeStack();
  try {
    const call = openWsCall(stack.wsUrl, { path: UPLOAD });
    for (let i = 0; i < 1000; i++) call.send(post(`line ${i}`));
    call.closeSend();
    const replies = [];
    for await (const bytes of call.messages) {
      replies.push(fromBinary(UploadResponseSchema, bytes));
    }
    assert.deepEqual((await call.status).code, 0);
    assert.deepEqual(replies.length, 1);
    assert.deepEqual(replies[0].messageCount, 1000);
    assert.deepEqual(replies[0].success, true);
  } finally {
    await stack.close();
  }
});

Deno.test("createWebSocketBridge() ends with RESOURCE_EXHAUSTED for a message over maxMessageBytes", async () => {
  const stack = await startBridgeStack({ maxMessageBytes: 1024 });
  try {
    const call = openWsCall(stack.wsUrl, { path: UPLOAD });
    call.send(post("small"));
    call.send(post("x".repeat(2000)));
    const status = await call.status;
    assert.deepEqual(status.code, 8);
    assert.match(status.message, /exceeds the limit of 1024/);
  } finally {
    await stack.close();
  }
});

Deno.test("createWebSocketBridge() closing the socket cancels the call and the core drops the subscriber", async () => {
  const stack = await startBridgeStack();
  try {
    const call = openWsCall(stack.wsUrl, { path: SUBSCRIBE });
    call.send(
      toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { room: "r1", user: "ann" }),
      ),
    );
    call.closeSend();
    const first = await call.messages[Symbol.asyncIterator]().next();
    assert.deepEqual(
      fromBinary(MessageSchema, first.value!).content,
      "Welcome to room r1, ann!",
    );
    assert.deepEqual(stack.core.snapshot().subscribers, 1);
    call.cancel();
    assert.deepEqual((await call.status).code, 1);
    await waitFor(
      () => stack.core.snapshot().subscribers === 0,
      "the core to drop the subscriber",
    );
  } finally {
    await stack.close();
  }
});

Deno.test("createWebSocketBridge() ends a stream at its deadline with DEADLINE_EXCEEDED", async () => {
  const stack = await startBridgeStack();
  try {
    const started = Date.now();
    const call = openWsCall(stack.wsUrl, { path: SUBSCRIBE, timeoutMs: 300 });
    call.send(
      toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { room: "r2", user: "bo" }),
      ),
    );
    call.closeSend();
    const { messages, status } = await collect(call);
    assert.deepEqual(messages.length, 1);
    assert.deepEqual(status.code, 4);
    assert(Date.now() - started >= 250, "ended before its deadline");
    await waitFor(
      () => stack.core.snapshot().subscribers === 0,
      "the core to drop the subscriber",
    );
  } finally {
    await stack.close();
  }
});

Deno.test("createWebSocketBridge() rejects a bad header, a bad frame and a frame after half-close", async () => {
  const stack = await startBridgeStack();
  try {
    const bad = openWsCall(stack.wsUrl, { path: "not a path" });
    assert.deepEqual((await bad.status).code, 3);

    const raw = new WebSocket(stack.wsUrl);
    raw.binaryType = "arraybuffer";
    const ended = new Promise<Uint8Array>((resolve) => {
      raw.onmessage = (e) => resolve(new Uint8Array(e.data as ArrayBuffer));
    });
    const closed = new Promise((resolve) => raw.onclose = resolve);
    raw.onopen = () => {
      raw.send(JSON.stringify({ path: CHAT }));
      const frame = encodeFrame(FLAG_DATA, new Uint8Array(4));
      raw.send(frame.subarray(0, 7)); // length says 4, frame holds 2
    };
    const trailer = new TextDecoder().decode((await ended).subarray(5));
    assert.match(trailer, /grpc-status: 3\r\n/);
    await closed;

    const late = openWsCall(stack.wsUrl, { path: UPLOAD });
    late.closeSend();
    late.send(post("too late"));
    const status = await late.status;
    assert.deepEqual(status.code, 3);
    assert.match(status.message, /after half-close/);
  } finally {
    await stack.close();
  }
});

Deno.test("createWebSocketBridge() answers 426 to plain HTTP and 403 to an origin not allowed", async () => {
  const stack = await startBridgeStack({
    allowedOrigins: ["http://good.example"],
  });
  try {
    const plain = await fetch(stack.httpUrl);
    assert.deepEqual(plain.status, 426);
    await plain.body?.cancel();
    const wrong = await fetch(stack.httpUrl, {
      headers: { origin: "http://evil.example", upgrade: "websocket" },
    });
    assert.deepEqual(wrong.status, 403);
    await wrong.body?.cancel();
  } finally {
    await stack.close();
  }
});

Deno.test("createWebSocketBridge() with an origin allow-list still lets the edge's own page open a socket", async () => {
  const stack = await startBridgeStack({
    allowedOrigins: ["http://good.example"],
  });
  const open = (origin: string) =>
    new Promise<"open" | "refused">((resolve) => {
      // Deno's WebSocket takes headers, so the test can be any page.
      const socket = new WebSocket(stack.wsUrl, {
        headers: { origin },
      } as unknown as string);
      socket.onopen = () => {
        socket.close();
        resolve("open");
      };
      socket.onerror = () => resolve("refused");
    });
  try {
    const own = new URL(stack.httpUrl).origin;
    assert.equal(await open(own), "open", "the page's own origin");
    assert.equal(await open("http://good.example"), "open");
    assert.equal(await open("http://evil.example"), "refused");
    assert.equal(await open("null"), "refused");
  } finally {
    await stack.close();
  }
});

Deno.test("createWebSocketBridge() buffers one largest message plus 64 KiB per socket by default: past it RESOURCE_EXHAUSTED, other sockets unaffected", async () => {
  const maxMessageBytes = 64 * 1024;
  const bound = maxMessageBytes + 64 * 1024;
  // A core that never reads the requests of /test.Stall/Hold (so they wait
  // in the bridge's queue) and counts those of /test.Count/All.
  const upstream: Pick<Upstream, "call"> = {
    call(path, requests, opts) {
      const status = new Promise<UpstreamStatus>((resolve) => {
        const aborted = () =>
          resolve({ code: 1, message: "cancelled", trailers: {} });
        opts.signal.addEventListener("abort", aborted, { once: true });
        if (path !== "/test.Count/All") return;
        (async () => {
          let n = 0;
          for await (const _ of requests as AsyncIterable<Uint8Array>) n++;
          resolve({ code: 0, message: `${n}`, trailers: {} });
        })();
      });
      return { headers: Promise.resolve({}), messages: none(), status };
    },
  };
  async function* none(): AsyncGenerator<Uint8Array> {}
  const handler = createWebSocketBridge(upstream, { maxMessageBytes });
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => handler(request),
  );
  const url = `ws://127.0.0.1:${http.addr.port}/ws`;
  const within = <T>(p: Promise<T>, what: string) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      p,
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error(`no ${what} in 3 s`)), 3000)
      ),
    ]).finally(() => clearTimeout(timer));
  };
  try {
    const full = new Uint8Array(maxMessageBytes);
    const held = openWsCall(url, { path: "/test.Stall/Hold" });
    held.send(full);
    const counted = openWsCall(url, { path: "/test.Count/All" });
    counted.send(full);
    const over = openWsCall(url, { path: "/test.Stall/Hold" });
    // Up to the bound: one largest message and 64 KiB of others behind it.
    over.send(full);
    over.send(new Uint8Array(bound - maxMessageBytes));
    over.send(new Uint8Array(1));
    const status = await within(over.status, "status for the socket over");
    assert.equal(status.code, 8);
    assert.equal(
      status.message,
      `more than ${bound} request bytes waiting for the core`,
    );
    // The others go on: one is counted through, one still holds its bytes.
    counted.send(full);
    counted.closeSend();
    const done = await within(counted.status, "status for the counted call");
    assert.deepEqual([done.code, done.message], [0, "2"]);
    let heldEnded = false;
    held.status.then(() => heldEnded = true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(heldEnded, false);
    held.cancel();
    await held.status;
  } finally {
    await http.shutdown();
  }
});

Deno.test("the page's uploadLines() and startBidiChat() stamp each message, so the room's history shows when it was sent", async () => {
  const stack = await startBridgeStack();
  try {
    const who = { user: "ann", room: "stamped" };
    const before = Date.now();
    const upload = await uploadLines(
      stack.wsUrl,
      who,
      ["one", "two"],
      () => {},
    );
    assert.equal(upload.status.code, 0);
    const echoed = Promise.withResolvers<void>();
    const bidi = startBidiChat(stack.wsUrl, who, () => echoed.resolve());
    bidi.say("three");
    await echoed.promise;
    bidi.end();
    assert.equal((await bidi.status).code, 0);
    const after = Date.now();

    const replay = openWsCall(stack.wsUrl, { path: SUBSCRIBE, timeoutMs: 500 });
    replay.send(toBinary(
      SubscribeRequestSchema,
      create(SubscribeRequestSchema, { ...who, user: "bob", history: 3 }),
    ));
    replay.closeSend();
    const { messages } = await collect(replay);
    const stored = messages.filter((m) => m.type === MessageType.CHAT);
    assert.deepEqual(stored.map((m) => m.content), ["one", "two", "three"]);
    for (const message of stored) {
      assert.ok(message.timestamp, `${message.content} has no timestamp`);
      const ms = Number(message.timestamp.seconds) * 1000 +
        message.timestamp.nanos / 1e6;
      assert.ok(ms >= before - 1000 && ms <= after + 1000, `${ms}`);
    }
  } finally {
    await stack.close();
  }
});
