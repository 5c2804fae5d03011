/**
 * Keepalive PINGs and the idle-connection timeout of the core's HTTP/2
 * server, against raw-frame peers on real sockets: a silent peer is pinged
 * and closed when it does not answer, one that answers stays, and a
 * connection with no open stream is closed after the idle timeout.
 */
import assert from "node:assert/strict";
import { type H2Listener, listenH2 } from "../http2/server/listener.ts";
import type { H2ServerOptions } from "../http2/server/connection.ts";
import {
  ErrorCode,
  Flag,
  FrameType,
  pingFrame,
} from "../protocol/http2/frames.ts";
import { frame, u32 } from "./fixtures/h2_raw_peer.ts";
import { rawClient } from "./fixtures/h2_raw_client.ts";
import { startCore } from "./support/core.ts";
import { startCoreEdge } from "./fixtures/edge_stack.ts";

function listen(
  options: Partial<H2ServerOptions>,
): H2Listener & AsyncDisposable {
  const listener = listenH2({
    hostname: "127.0.0.1",
    port: 0,
    ...options,
    onStream: (s) => s.on("data", () => {}),
  });
  return Object.assign(listener, {
    async [Symbol.asyncDispose]() {
      listener.destroy();
      await listener.closed;
    },
  });
}

/** A listener with keepalive PINGs every `ms` (and as long to answer). */
const keepaliveOnly = (ms: number) =>
  listen({ keepaliveIntervalMs: ms, keepaliveTimeoutMs: ms, idleTimeoutMs: 0 });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function request(peer: Awaited<ReturnType<typeof rawClient>>, id: number) {
  return peer.headers(id, [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/x"],
    ["content-type", "application/grpc"],
  ]);
}

Deno.test("listenH2() keepalive: a silent peer gets a PING and is closed when it never answers", async () => {
  await using listener = keepaliveOnly(100);
  using peer = await rawClient(listener.port);
  const started = Date.now();
  const ping = await peer.until((f) => f.type === FrameType.PING);
  assert.equal(ping.flags & Flag.ACK, 0, "a PING, not an ACK");
  assert.ok(Date.now() - started >= 90, "after the interval");
  // No answer: the connection ends.
  await peer.eof();
  assert.ok(Date.now() - started < 2000);
  assert.equal(listener.connections, 0);
});

Deno.test("listenH2() keepalive: a peer that answers its PINGs stays open past several intervals", async () => {
  await using listener = keepaliveOnly(50);
  using peer = await rawClient(listener.port);
  let pings = 0;
  const until = Date.now() + 600;
  while (Date.now() < until) {
    const f = await peer.until((f) =>
      f.type === FrameType.PING || f.type === FrameType.GOAWAY
    );
    assert.equal(f.type, FrameType.PING);
    pings++;
    await peer.write(pingFrame(f.payload, true));
  }
  assert.ok(pings >= 3, `pinged ${pings} times`);
  assert.equal(listener.connections, 1);
});

Deno.test("listenH2() keepalive: a peer that keeps sending is never pinged", async () => {
  await using listener = keepaliveOnly(100);
  using peer = await rawClient(listener.port);
  const seen: number[] = [];
  const reading = (async () => {
    while (true) {
      const f = await peer.next().catch(() => null);
      if (f === null) return;
      if (f.type === FrameType.PING && (f.flags & Flag.ACK) === 0) {
        seen.push(f.type);
      }
    }
  })();
  for (let i = 0; i < 12; i++) {
    await peer.write(pingFrame(new Uint8Array(8)));
    await sleep(40);
  }
  assert.deepEqual(seen, [], "no PING from the server");
  assert.equal(listener.connections, 1);
  peer[Symbol.dispose]();
  await reading;
});

Deno.test("listenH2() idle timeout: a connection without streams is closed (no GOAWAY: Deno's http2 client can abort on one)", async () => {
  await using listener = listen({ keepaliveIntervalMs: 0, idleTimeoutMs: 150 });
  using peer = await rawClient(listener.port);
  const started = Date.now();
  const frames: number[] = [];
  while (true) {
    const f = await peer.next();
    if (f === null) break;
    frames.push(f.type);
  }
  assert.ok(Date.now() - started >= 140, "not before the timeout");
  assert.ok(!frames.includes(FrameType.GOAWAY), "closed without GOAWAY");
  assert.equal(listener.connections, 0);
});

Deno.test("listenH2() idle timeout: 300 idle connections are all closed, and the listener holds none", async () => {
  await using listener = listen({
    keepaliveIntervalMs: 0,
    idleTimeoutMs: 1500,
  });
  const peers = await Promise.all(
    Array.from({ length: 300 }, () => rawClient(listener.port)),
  );
  assert.equal(listener.connections, 300);
  try {
    // Every one reaches EOF (the read loop sees the server's close).
    await Promise.all(peers.map((p) => p.eof()));
    const deadline = Date.now() + 2000;
    while (listener.connections > 0 && Date.now() < deadline) await sleep(10);
    assert.equal(listener.connections, 0);
  } finally {
    for (const p of peers) p[Symbol.dispose]();
  }
});

Deno.test("listenH2() idle timeout: counts from the end of the last stream, not from the start", async () => {
  await using listener = listen({ keepaliveIntervalMs: 0, idleTimeoutMs: 150 });
  using peer = await rawClient(listener.port);
  // A stream open across several timeouts keeps the connection.
  await peer.write(request(peer, 1));
  await sleep(400);
  assert.equal(listener.connections, 1);
  await peer.write(frame(FrameType.RST_STREAM, 0, 1, u32(ErrorCode.CANCEL)));
  const ended = Date.now();
  await peer.eof();
  assert.ok(Date.now() - ended >= 140, "a full timeout after the stream");
});

Deno.test("core (h2 transport): an idle grpc-js connection is closed after --idle-timeout-ms and the client reconnects", async () => {
  await using f = await startCore({ transport: "h2", idleTimeoutMs: 200 });
  const send = () =>
    f.client.sendMessage({ user: "u", room: "idle", content: "hi" });
  assert.match((await send()).messageId, /^msg_/);
  await sleep(600);
  assert.match((await send()).messageId, /^msg_/, "served on a new connection");
});

Deno.test("core (h2 transport): a grpc-js client answers keepalive PINGs; its quiet subscription stays open", async () => {
  await using f = await startCore({
    transport: "h2",
    keepaliveIntervalMs: 50,
    keepaliveTimeoutMs: 200,
    aliveIntervalMs: 0,
  });
  const sub = f.client.subscribeMessages({ room: "quiet", user: "u" });
  const got: string[] = [];
  sub.on("data", (m: { content: string }) => got.push(m.content));
  sub.on("error", () => {});
  await sleep(800); // many PING rounds, no messages
  await f.client.sendMessage({ user: "v", room: "quiet", content: "late" });
  const deadline = Date.now() + 2000;
  while (!got.includes("late") && Date.now() < deadline) await sleep(10);
  assert.ok(got.includes("late"), "the subscription still delivers");
  sub.cancel();
});

Deno.test("core (h2 transport) behind the edge: the edge's HTTP/2 client reconnects after the core closes an idle connection", async () => {
  await using stack = await startCoreEdge({}, {
    transport: "h2",
    idleTimeoutMs: 150,
  });
  const send = async () => {
    const res = await stack.fetch(`${stack.url}/chat.ChatService/SendMessage`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: "u", room: "idle", content: "hi" }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()).messageId as string;
  };
  assert.match(await send(), /^msg_/);
  await sleep(500); // the core closed the edge's idle connection
  assert.match(await send(), /^msg_/);
});
