/**
 * The edge's stop for WebSocket bridge calls (edge/shutdown.ts), against a
 * real core: streams, and calls the core has not got, end UNAVAILABLE at
 * once with their status frame; a unary call the core has gets the core's
 * answer (a client told UNAVAILABLE would send its message again), or
 * UNAVAILABLE once the grace is over; new sockets and /healthz get 503.
 *
 * The core's answer is held back at the edge (`gate`) so that the call is
 * provably in flight when the stop begins.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  MessageSchema,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { EdgeShutdown } from "../edge/shutdown.ts";
import { createWebSocketBridge } from "../edge/websocket.ts";
import type { Upstream } from "../edge/upstream/types.ts";
import { decodeFrame, decodeStatus, FLAG_END } from "../protocol/ws_bridge.ts";
import { grpcWebBody, readGrpcWeb } from "./fixtures/edge_raw.ts";
import { openWsCall, type WsCall } from "../web/ws_call.ts";
import { startCoreEdge, waitUntil } from "./fixtures/edge_stack.ts";

const SEND = "/chat.ChatService/SendMessage";
const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";

/** The core's answers to SendMessage wait for `open()`; `started` counts calls. */
function gatedSends() {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  const seen = { started: 0 };
  const wrap = (upstream: Upstream): Upstream => ({
    ...upstream,
    call(path, requests, options) {
      const call = upstream.call(path, requests, options);
      if (path !== SEND) return call;
      seen.started++;
      return {
        headers: call.headers,
        messages: (async function* () {
          await gate;
          yield* call.messages;
        })(),
        status: gate.then(() => call.status),
      };
    },
  });
  return { wrap, open, seen };
}

function send(url: string, content: string): WsCall {
  const call = openWsCall(url, { path: SEND, timeoutMs: 30_000 });
  call.send(toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "ann", room: "r", content }),
  ));
  call.closeSend();
  return call;
}

async function subscribed(url: string): Promise<WsCall> {
  const call = openWsCall(url, { path: SUBSCRIBE });
  call.send(toBinary(
    SubscribeRequestSchema,
    create(SubscribeRequestSchema, { user: "bob", room: "r" }),
  ));
  call.closeSend();
  const welcome = await call.messages[Symbol.asyncIterator]().next();
  assert.match(
    fromBinary(MessageSchema, welcome.value!).content,
    /^Welcome to room r/,
  );
  return call;
}

/** A socket that never sends its call header; resolves its status frame. */
async function silentSocket(url: string) {
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const status = new Promise<ReturnType<typeof decodeStatus>>(
    (resolve, reject) => {
      socket.onmessage = (e) => {
        const frame = decodeFrame(new Uint8Array(e.data as ArrayBuffer));
        if (frame.flag === FLAG_END) resolve(decodeStatus(frame.payload));
      };
      socket.onclose = () => reject(new Error("closed with no status frame"));
    },
  );
  await new Promise((resolve) => socket.onopen = resolve);
  return { socket, status };
}

/**
 * The edge, stopped by `shutdown`, before a real core whose SendMessage
 * answers wait at the edge for `gated.open()` (opened on dispose too).
 */
async function gatedEdge() {
  const shutdown = new EdgeShutdown();
  const gated = gatedSends();
  const stack = await startCoreEdge({}, {}, {
    wrapUpstream: gated.wrap,
    shutdown,
  });
  const ws = stack.url.replace("http", "ws") + "/ws";
  return {
    shutdown,
    gated,
    stack,
    ws,
    /** A bridge SendMessage, once it has gone upstream: the core has it. */
    async sendInFlight(content: string): Promise<WsCall> {
      const before = gated.seen.started;
      const call = send(ws, content);
      await waitUntil(
        () => gated.seen.started === before + 1,
        3000,
        "the call upstream",
      );
      return call;
    },
    async [Symbol.asyncDispose]() {
      gated.open();
      await stack.close();
    },
  };
}

const settled = (p: Promise<unknown>) => {
  const state = { done: false };
  p.finally(() => state.done = true);
  return state;
};

Deno.test("the edge's stop: a unary bridge call the core has gets its answer; streams and calls not sent end UNAVAILABLE at once; new sockets and /healthz get 503", async () => {
  await using edge = await gatedEdge();
  const { shutdown, gated, stack, ws } = edge;
  const stream = await subscribed(ws);
  const silent = await silentSocket(ws);
  const unary = await edge.sendInFlight("sent before the stop");
  const unaryState = settled(unary.status);

  const stopped = shutdown.stop(10_000);
  const stoppedState = settled(stopped);
  const streamStatus = await stream.status;
  assert.deepEqual(
    [streamStatus.code, streamStatus.message],
    [14, "edge is shutting down"],
  );
  const silentStatus = await silent.status;
  assert.deepEqual(
    [silentStatus.code, silentStatus.message],
    [14, "edge is shutting down"],
  );
  const refused = await stack.fetch(`${stack.url}/ws`);
  assert.deepEqual(
    [refused.status, await refused.text()],
    [503, "edge is shutting down\n"],
  );
  const health = await stack.fetch(`${stack.url}/healthz`);
  assert.equal(health.status, 503);
  assert.equal((await health.json()).status, "stopping");

  // The unary call is still running, and holds the stop.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(unaryState.done, false);
  assert.equal(stoppedState.done, false);

  gated.open();
  const answer = await unary.messages[Symbol.asyncIterator]().next();
  const response = fromBinary(SendMessageResponseSchema, answer.value!);
  assert.match(response.messageId, /^msg_\d+$/);
  assert.equal(response.offset, 1n);
  assert.equal((await unary.status).code, 0);
  await stopped;
});

Deno.test("the edge's stop: a unary bridge call still running when the grace is over ends UNAVAILABLE with its status frame", async () => {
  await using edge = await gatedEdge();
  const unary = await edge.sendInFlight("never answered in time");
  const t0 = performance.now();
  await edge.shutdown.stop(300);
  const status = await unary.status;
  assert.deepEqual(
    [status.code, status.message],
    [14, "edge is shutting down"],
  );
  assert.ok(performance.now() - t0 >= 290);
});

Deno.test("the edge's stop: a unary bridge call gone upstream streamed, before its half-close, does not hold the stop; after its half-close it does", async () => {
  await using edge = await gatedEdge();
  const { shutdown, gated, ws } = edge;
  // Two calls that send their request and no half-close: after the edge's
  // wait for it, each goes upstream streamed.
  const open = (content: string) => {
    const call = openWsCall(ws, { path: SEND, timeoutMs: 30_000 });
    call.send(toBinary(
      SendMessageRequestSchema,
      create(SendMessageRequestSchema, { user: "ann", room: "r", content }),
    ));
    return call;
  };
  const halfOpen = open("never half-closed");
  const closedLate = open("half-closed late");
  await waitUntil(() => gated.seen.started === 2, 3000, "the calls upstream");
  closedLate.closeSend();
  await new Promise((r) => setTimeout(r, 100));
  const stopped = shutdown.stop(10_000);
  const stoppedState = settled(stopped);
  const status = await halfOpen.status;
  assert.deepEqual([status.code, status.message], [
    14,
    "edge is shutting down",
  ]);
  // The one the core has whole holds the stop until it is answered.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(stoppedState.done, false);
  gated.open();
  assert.equal((await closedLate.status).code, 0);
  const t0 = performance.now();
  await stopped;
  assert.ok(performance.now() - t0 < 5_000);
});

Deno.test("the edge's stop: a gRPC-Web or Connect call that comes while a unary bridge call holds the stop is refused UNAVAILABLE before it reaches the core", async () => {
  // Deno.serve still listens while the stop waits for the bridge call; a
  // call it took then would reach the core and be cut at the end of the
  // grace, its client told UNAVAILABLE for a message the core stored.
  await using edge = await gatedEdge();
  const { gated, stack } = edge;
  const unary = await edge.sendInFlight("sent before the stop");
  const stopped = edge.shutdown.stop(10_000);

  // First a call the gate does not hold, so that this fails, not hangs,
  // where calls are let through.
  const presence = await stack.fetch(
    `${stack.url}/chat.ChatService/ListPresence`,
    {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ room: "r" }),
    },
  );
  assert.deepEqual([presence.status, await presence.json()], [503, {
    code: "unavailable",
    message: "edge is shutting down",
  }]);
  const request = toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, {
      user: "ann",
      room: "r",
      content: "sent during the stop",
    }),
  );
  const grpcWeb = await readGrpcWeb(
    await stack.fetch(`${stack.url}${SEND}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: grpcWebBody([request]),
    }),
  );
  assert.deepEqual(
    [grpcWeb.grpcStatus, grpcWeb.grpcMessage],
    [14, "edge is shutting down"],
  );
  const connect = await stack.fetch(`${stack.url}${SEND}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "ann", room: "r", content: "during" }),
  });
  assert.deepEqual([connect.status, await connect.json()], [503, {
    code: "unavailable",
    message: "edge is shutting down",
  }]);
  // The page and /healthz are no calls: served as before.
  assert.equal((await stack.fetch(`${stack.url}/healthz`)).status, 503);
  const page = await stack.fetch(`${stack.url}/`);
  await page.body?.cancel();
  assert.equal(page.status, 200);
  assert.equal(gated.seen.started, 1);

  gated.open();
  assert.equal((await unary.status).code, 0);
  await stopped;
});

Deno.test("the edge's stop: a socket still being upgraded when the stop begins gets its status frame once it opens", async () => {
  // The handler has answered the upgrade, Deno has not opened the socket
  // yet: a signal can come in between.
  const shutdown = new EdgeShutdown();
  const bridge = createWebSocketBridge({
    call: () => {
      throw new Error("no call goes upstream");
    },
  }, { maxMessageBytes: 1 << 20, shutdown });
  let stopped: Promise<void> | undefined;
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => {
      const response = bridge(request, info);
      stopped = Promise.resolve().then(() => shutdown.stop(1000));
      return response;
    },
  );
  const call = openWsCall(`ws://127.0.0.1:${server.addr.port}/ws`, {
    path: SEND,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const status = await Promise.race([
    call.status,
    new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), 2000)),
  ]);
  clearTimeout(timer);
  call.cancel();
  await stopped;
  assert.deepEqual(
    [status?.code, status?.message],
    [14, "edge is shutting down"],
  );
});
