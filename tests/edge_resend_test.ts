/**
 * The balancer sends a call to another core when the first provably never
 * got or never processed it: its connection was refused before the request
 * was written, or the core's GOAWAY excluded it (a core draining for a
 * restart). A call that may have been processed is not sent again, nor one
 * whose request messages were not all known up front.
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
  MessageSchema,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { createBalancedUpstream } from "../edge/upstream/balancer.ts";
import { createH2Upstream } from "../edge/upstream/h2_upstream.ts";
import type { Upstream } from "../edge/upstream/types.ts";
import { Code } from "../edge/upstream/status.ts";
import {
  ErrorCode,
  Flag,
  FrameType,
  goawayFrame,
  rstStreamFrame,
} from "../protocol/http2/frames.ts";
import {
  type BridgeStatus,
  decodeFrame,
  decodeStatus,
  encodeFrame,
  FLAG_DATA,
  FLAG_END,
} from "../protocol/ws_bridge.ts";
import { bridgeUrl, openWsCall } from "../web/ws_call.ts";
import { startCoreEdge, startEdge } from "./fixtures/edge_stack.ts";
import { drain } from "./fixtures/upstream_calls.ts";
import {
  frame,
  type PeerConnection,
  startRawPeer,
} from "./fixtures/h2_raw_peer.ts";
import { startCore } from "./support/core.ts";

const SEND = "/chat.ChatService/SendMessage";
const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";

/** A port nothing listens on: connections to it are refused. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Answers PINGs; on a request's HEADERS, `onRequest`; until EOF. */
async function serve(
  p: PeerConnection,
  onRequest: (streamId: number) => Promise<boolean>,
) {
  while (true) {
    const f = await p.next();
    if (f === null) return;
    if (f.type === FrameType.PING && !(f.flags & Flag.ACK)) {
      await p.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
    } else if (f.type === FrameType.HEADERS) {
      if (!(await onRequest(f.streamId))) return;
    }
  }
}

/** Balances over `urls` with the edge's own client; probes far apart. */
function balance(urls: string[]) {
  return createBalancedUpstream(
    urls,
    // As createUpstreams() builds them: the balancer resends refused calls.
    (url): Upstream =>
      createH2Upstream(url, { maxMessageBytes: 4 << 20, retryRefused: false }),
    { probeIntervalMs: 60_000 },
  );
}

const sendBody = (content: string) => [
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "u", room: "lobby", content }),
  ),
];
async function* streamedBody(content: string) {
  yield sendBody(content)[0];
}
const call = (up: Upstream, path: string, body: Uint8Array[]) =>
  up.call(path, body, { metadata: {}, signal: new AbortController().signal });

Deno.test("balancer: a call refused at connect goes to the next core (unary and server streaming), and the refusing core is marked down", async () => {
  await using f = await startCore({ aliveIntervalMs: 0 });
  const dead = `http://127.0.0.1:${closedPort()}`;
  const live = `http://127.0.0.1:${f.core.port}`;

  // The first pick is the first core: still healthy until its first probe.
  const up = balance([dead, live]);
  try {
    const r = await drain(call(up, SEND, sendBody("hello")));
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.equal(r.messages.length, 1);
    const answer = fromBinary(SendMessageResponseSchema, r.messages[0]);
    assert.match(answer.messageId, /^msg_\d+$/);
    assert.equal(up.members()[0].healthy, false);
  } finally {
    await up.close();
  }

  const streaming = balance([dead, live]);
  try {
    const ctl = new AbortController();
    const sub = streaming.call(SUBSCRIBE, [
      toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { room: "lobby", user: "w" }),
      ),
    ], { metadata: {}, signal: ctl.signal });
    assert.equal((await sub.headers)["content-type"], undefined);
    const it = sub.messages[Symbol.asyncIterator]();
    const welcome = fromBinary(MessageSchema, (await it.next()).value!);
    assert.match(welcome.content, /^Welcome/);
    assert.equal(typeof sub.statusNow, "function");
    assert.equal(sub.statusNow!(), undefined, "still open");
    ctl.abort();
    assert.equal((await sub.status).code, Code.CANCELLED);
    assert.equal(sub.statusNow!()?.code, Code.CANCELLED);
    assert.deepEqual(streaming.members().map((m) => m.outstanding), [0, 0]);
  } finally {
    await streaming.close();
  }
});

Deno.test("balancer: a call the core may have processed is not sent again, nor one whose request was streamed", async () => {
  await using f = await startCore({ aliveIntervalMs: 0 });
  const live = `http://127.0.0.1:${f.core.port}`;
  // Reads the request, then drops the connection: the core may have it.
  const peer = startRawPeer(async (p, index) => {
    // Its next connection is the edge's probe, which may be closed at once.
    if (index > 0) return;
    await p.handshake();
    await serve(p, () => Promise.resolve(false));
  });
  const up = balance([`http://127.0.0.1:${peer.port}`, live]);
  try {
    const r = await drain(call(up, SEND, sendBody("maybe stored")));
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.equal(r.status.unsent, undefined, r.status.message);
    assert.ok(peer.accepted() >= 1);
  } finally {
    await up.close();
    await peer.close();
  }

  // Refused at connect, but streamed: its messages cannot be read again.
  const streamed = balance([`http://127.0.0.1:${closedPort()}`, live]);
  try {
    const r = await drain(
      streamed.call(SEND, streamedBody("streamed"), {
        metadata: {},
        signal: new AbortController().signal,
      }),
    );
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.equal(r.status.unsent, true, r.status.message);
  } finally {
    await streamed.close();
  }
});

Deno.test("edge: calls racing a core's GOAWAY (a core draining for a restart) are answered by another core, for Connect and gRPC-Web clients", async () => {
  await using f = await startCore({ aliveIntervalMs: 0 });
  let excluded = 0;
  // Every request is answered with GOAWAY(last stream 0): not processed.
  const draining = startRawPeer(async (p) => {
    await p.handshake();
    await serve(p, async () => {
      excluded++;
      await p.write(goawayFrame(0, ErrorCode.NO_ERROR));
      return true;
    });
  });
  await using edge = startEdge(`http://127.0.0.1:${f.core.port}`, {
    upstream: [
      `http://127.0.0.1:${draining.port}`,
      `http://127.0.0.1:${f.core.port}`,
    ],
  });
  try {
    for (
      const transport of [
        createConnectTransport({ baseUrl: edge.url, fetch: edge.fetch }),
        createGrpcWebTransport({ baseUrl: edge.url, fetch: edge.fetch }),
      ]
    ) {
      const client = createClient(ChatService, transport);
      for (let i = 0; i < 4; i++) {
        const answer = await client.sendMessage({
          user: "u",
          room: "lobby",
          content: `m${i}`,
        });
        assert.match(answer.messageId, /^msg_\d+$/);
      }
      const ctl = new AbortController();
      for await (
        const m of client.subscribeMessages({ room: "lobby", user: "w" }, {
          signal: ctl.signal,
        })
      ) {
        assert.match(m.content, /^Welcome/);
        break;
      }
      ctl.abort();
    }
    assert.ok(excluded >= 1, "no call went to the draining core");
    // Each such call was sent again, and /metrics says how many.
    const metrics = await (await edge.fetch(`${edge.url}/metrics`)).text();
    const resends = /^chat_edge_upstream_resends_total (\d+)$/m.exec(metrics);
    // (every call the draining core refused; its health checks, refused
    // too if one ran, are not sent again)
    const n = Number(resends?.[1]);
    assert.ok(n >= 1 && n <= excluded, `${n} of ${excluded}\n${metrics}`);
  } finally {
    await edge.close();
    await draining.close();
  }
});

Deno.test("edge: WebSocket bridge calls that take one request (unary, server streaming) racing a core's GOAWAY are answered by another core; two requests for one are the core's to refuse", async () => {
  await using f = await startCore({ aliveIntervalMs: 0 });
  // Every request is answered with GOAWAY(last stream 0): not processed.
  const draining = rawCore(excluding);
  await using edge = startEdge(`http://127.0.0.1:${f.core.port}`, {
    upstream: [draining.url, `http://127.0.0.1:${f.core.port}`],
  });
  const url = bridgeUrl(new URL(edge.url));
  /** One bridge call: its request, half-closed or not; its answers. */
  async function bridged(path: string, request: Uint8Array, halfClose = true) {
    const call = openWsCall(url, { path, metadata: {} });
    call.send(request);
    if (halfClose) call.closeSend();
    const answers: Uint8Array[] = [];
    for await (const m of call.messages) {
      answers.push(m);
      // A subscription goes on: its welcome is the answer.
      if (path === SUBSCRIBE) call.cancel();
    }
    return { answers, status: await call.status };
  }
  try {
    for (let i = 0; i < 4; i++) {
      const sent = await bridged(SEND, sendBody(`ws${i}`)[0]);
      assert.equal(sent.status.code, Code.OK, sent.status.message);
      assert.match(
        fromBinary(SendMessageResponseSchema, sent.answers[0]).messageId,
        /^msg_\d+$/,
      );
      const sub = await bridged(
        SUBSCRIBE,
        toBinary(
          SubscribeRequestSchema,
          create(SubscribeRequestSchema, { room: "lobby", user: `w${i}` }),
        ),
      );
      assert.match(
        fromBinary(MessageSchema, sub.answers[0]).content,
        /^Welcome/,
        sub.status.message,
      );
    }
    assert.ok(
      draining.seen.length >= 1,
      "no bridge call went to the draining core",
    );
    // Two requests for a one-request method: sent on as they came, and
    // the core's refusal is the status (the edge does not judge it; through
    // an edge of the one core: streamed, it is not sent again).
    await using direct = startEdge(`http://127.0.0.1:${f.core.port}`);
    const two = openWsCall(bridgeUrl(new URL(direct.url)), {
      path: SEND,
      metadata: {},
    });
    two.send(sendBody("one")[0]);
    two.send(sendBody("two")[0]);
    two.closeSend();
    for await (const _ of two.messages) { /* none expected */ }
    const refused = await two.status;
    assert.notEqual(refused.code, Code.OK);
    assert.match(refused.message, /message/i);
  } finally {
    await edge.close();
    await draining.peer.close();
  }
});

Deno.test("edge: two near-limit requests for a one-request method over the WebSocket bridge are the core's to refuse, as on a streaming method, not RESOURCE_EXHAUSTED", async () => {
  const maxMessageBytes = 100_000;
  await using stack = await startCoreEdge({ maxMessageBytes });
  const url = bridgeUrl(new URL(stack.url));
  // Together over the socket's buffer (one largest message plus 64 KiB):
  // the first is on its way to the core, as on any stream.
  const request = new Uint8Array(maxMessageBytes - 1000);
  for (const path of [SEND, "/chat.ChatService/Chat"]) {
    const call = openWsCall(url, { path, metadata: {} });
    call.send(request);
    call.send(request);
    call.closeSend();
    for await (const _ of call.messages) { /* none expected */ }
    const status = await call.status;
    assert.notEqual(status.code, Code.RESOURCE_EXHAUSTED, status.message);
    assert.notEqual(status.code, Code.OK, path);
  }
});

/**
 * A bridge call on a socket already open, so that the test times what the
 * edge holds: its header and request now, its half-close `halfCloseMs`
 * later; resolves to its status.
 */
async function heldBridgeCall(
  url: string,
  header: { path: string; timeoutMs: number },
  request: Uint8Array,
  halfCloseMs: number,
) {
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  const closed = new Promise((resolve) => socket.onclose = resolve);
  let status: BridgeStatus | undefined;
  socket.onmessage = (event) => {
    const f = decodeFrame(new Uint8Array(event.data));
    if (f.flag === FLAG_END) status = decodeStatus(f.payload);
  };
  socket.send(JSON.stringify({ ...header, metadata: {} }));
  socket.send(encodeFrame(FLAG_DATA, request));
  await new Promise((r) => setTimeout(r, halfCloseMs));
  socket.send(encodeFrame(FLAG_END, new Uint8Array(0)));
  await closed;
  return status ?? { code: -1, message: "no status frame", trailers: {} };
}

Deno.test("edge: a WebSocket bridge call held for its half-close goes upstream with what is left of its deadline, not all of it", async () => {
  const core = rawCore(answering("ok"));
  await using edge = startEdge(core.url);
  const url = bridgeUrl(new URL(edge.url));
  try {
    // Half-closed 80 ms after the header: sent whole, 80 ms late.
    const whole = await heldBridgeCall(
      url,
      {
        path: SEND,
        timeoutMs: 1000,
      },
      sendBody("whole")[0],
      80,
    );
    assert.equal(whole.code, Code.OK, whole.message);
    // Not half-closed in time: streamed after the edge's 100 ms wait.
    const streamed = await heldBridgeCall(
      url,
      {
        path: SUBSCRIBE,
        timeoutMs: 1000,
      },
      sendBody("streamed")[0],
      300,
    );
    assert.equal(streamed.code, Code.OK, streamed.message);
    const left = core.seen.map((s) => Number(s.timeout!.slice(0, -1)));
    assert.equal(left.length, 2);
    assert.ok(left[0] > 0 && left[0] <= 980, `grpc-timeout ${left[0]}m`);
    assert.ok(left[1] > 0 && left[1] <= 905, `grpc-timeout ${left[1]}m`);
  } finally {
    await edge.close();
    await core.peer.close();
  }
});

/**
 * A raw core on 127.0.0.1: answers PINGs; each request's HEADERS go to
 * `onRequest` (false ends the connection). Records the requests it saw.
 */
function rawCore(
  onRequest: (p: PeerConnection, id: number) => Promise<boolean>,
) {
  const seen: { id: number; timeout: string | undefined }[] = [];
  const resets: number[] = [];
  const peer = startRawPeer(async (p) => {
    try {
      await p.handshake();
    } catch {
      return; // a probe's connection, closed at once
    }
    while (true) {
      const f = await p.next();
      if (f === null) return;
      if (f.type === FrameType.PING && !(f.flags & Flag.ACK)) {
        await p.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
      } else if (f.type === FrameType.RST_STREAM) resets.push(f.streamId);
      else if (f.type === FrameType.HEADERS) {
        const headers = p.decoder.decode(f.payload);
        const timeout = headers.find(([k]) => k === "grpc-timeout")?.[1];
        seen.push({ id: f.streamId, timeout });
        if (!(await onRequest(p, f.streamId))) return;
      }
    }
  });
  return { peer, seen, resets, url: `http://127.0.0.1:${peer.port}` };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Answers every request with one message, `text`, and OK. */
const answering = (text: string) => async (p: PeerConnection, id: number) => {
  await p.write(p.answer(id, [encoder.encode(text)]));
  return true;
};
/** Answers every request with GOAWAY(last stream 0): never processed. */
const excluding = async (p: PeerConnection) => {
  await p.write(goawayFrame(0, ErrorCode.NO_ERROR));
  return true;
};

Deno.test("balancer: REFUSED_STREAM before any answer goes to the next core; every core refusing is tried once (the last twice) and the last refusal is the status", async () => {
  const refusing = rawCore(async (p, id) => {
    await p.write(rstStreamFrame(id, ErrorCode.REFUSED_STREAM));
    return true;
  });
  const b = rawCore(answering("b"));
  const up = balance([refusing.url, b.url]);
  try {
    const r = await drain(call(up, "/x/Y", [encoder.encode("q")]));
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.deepEqual(r.messages.map((m) => decoder.decode(m)), ["b"]);
    assert.equal(refusing.seen.length, 1);
  } finally {
    await up.close();
  }

  const cores = [rawCore(excluding), rawCore(excluding), rawCore(excluding)];
  const all = balance(cores.map((c) => c.url));
  try {
    const r = await drain(call(all, "/x/Y", [encoder.encode("q")]));
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.equal(r.status.unsent, true);
    // Each once, and the last once more on a new connection (no core
    // left: gRPC's transparent retry).
    assert.deepEqual(cores.map((c) => c.seen.length), [1, 1, 2]);
    assert.deepEqual(all.members().map((m) => m.outstanding), [0, 0, 0]);
  } finally {
    await all.close();
    for (const c of [refusing, b, ...cores]) await c.peer.close();
  }
});

Deno.test("balancer: a core that told one connection to go away (too many resets) gets the call again on a new one when no other core is up", async () => {
  const connections = new WeakMap<PeerConnection, number>();
  let dialled = 0;
  const calming = rawCore(async (p, id) => {
    if (!connections.has(p)) connections.set(p, dialled++);
    if (connections.get(p) === 0) {
      await p.write(goawayFrame(0, ErrorCode.ENHANCE_YOUR_CALM));
    } else await p.write(p.answer(id, [encoder.encode("calm")]));
    return true;
  });
  // A second core that is down: nothing listens on its port.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const downUrl = `http://127.0.0.1:${(probe.addr as Deno.NetAddr).port}`;
  probe.close();
  const up = balance([calming.url, downUrl]);
  try {
    assert.equal(await up.healthy(), true);
    const r = await drain(call(up, "/x/Y", [encoder.encode("q")]));
    assert.equal(r.status.code, Code.OK, r.status.message);
    assert.deepEqual(r.messages.map((m) => decoder.decode(m)), ["calm"]);
    assert.equal(calming.seen.length, 2);
    assert.equal(up.resends?.(), 1);
    assert.deepEqual(up.members().map((m) => m.healthy), [true, false]);
  } finally {
    await up.close();
    await calming.peer.close();
  }
});

Deno.test("balancer: a call sent again carries what is left of its deadline, and aborting it cancels it on the core that has it", async () => {
  const late = rawCore(async (p) => {
    await new Promise((r) => setTimeout(r, 300));
    return excluding(p);
  });
  const b = rawCore(answering("b"));
  const up = balance([late.url, b.url]);
  try {
    const r = await drain(
      up.call("/x/Y", [encoder.encode("q")], {
        metadata: {},
        signal: new AbortController().signal,
        timeoutMs: 1000,
      }),
    );
    assert.equal(r.status.code, Code.OK, r.status.message);
    // grpc-timeout in milliseconds: at most what was left after ~300 ms.
    const left = Number(b.seen[0].timeout!.slice(0, -1));
    assert.ok(left > 0 && left <= 710, `grpc-timeout ${b.seen[0].timeout}`);
  } finally {
    await up.close();
  }

  let arrived!: () => void;
  const held = new Promise<void>((r) => arrived = r);
  const holding = rawCore(() => {
    arrived();
    return Promise.resolve(true);
  });
  const a = rawCore(excluding);
  const cancelling = balance([a.url, holding.url]);
  try {
    const ctl = new AbortController();
    const pending = cancelling.call("/x/Y", [encoder.encode("q")], {
      metadata: {},
      signal: ctl.signal,
    });
    await held;
    assert.deepEqual(cancelling.members().map((m) => m.outstanding), [0, 1]);
    ctl.abort();
    assert.equal((await pending.status).code, Code.CANCELLED);
    assert.deepEqual(cancelling.members().map((m) => m.outstanding), [0, 0]);
    for (let i = 0; i < 100 && holding.resets.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(holding.resets, [holding.seen[0].id]);
  } finally {
    await cancelling.close();
    for (const c of [late, b, holding, a]) await c.peer.close();
  }
});

Deno.test("balancer: a core that answered and then excluded the stream with GOAWAY is not asked again: no two answers mixed", async () => {
  const a = rawCore(async (p, id) => {
    await p.write(
      p.headers(id, [[":status", "200"], ["content-type", "application/grpc"]]),
      frame(FrameType.DATA, 0, id, new Uint8Array([0, 0, 0, 0, 1, 97])),
    );
    await new Promise((r) => setTimeout(r, 50));
    await p.write(goawayFrame(0, ErrorCode.NO_ERROR));
    return true;
  });
  const b = rawCore(answering("b"));
  const up = balance([a.url, b.url]);
  try {
    const r = await drain(call(up, "/x/Y", [encoder.encode("q")]));
    assert.equal(r.status.code, Code.UNAVAILABLE);
    assert.equal(r.status.unsent, undefined);
    assert.deepEqual(r.messages.map((m) => decoder.decode(m)), ["a"]);
    assert.equal(b.seen.length, 0, "sent again after core a answered");
  } finally {
    await up.close();
    await a.peer.close();
    await b.peer.close();
  }
});
