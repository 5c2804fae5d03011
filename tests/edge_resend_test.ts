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
} from "../protocol/http2/frames.ts";
import { startEdge } from "./fixtures/edge_stack.ts";
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
    (url): Upstream => createH2Upstream(url, { maxMessageBytes: 4 << 20 }),
    { probeIntervalMs: 60_000 },
  );
}

const sendBody = (content: string) => [
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "u", room: "lobby", content }),
  ),
];
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
    assert.deepEqual(await sub.headers, await sub.headers);
    const it = sub.messages[Symbol.asyncIterator]();
    const welcome = fromBinary(MessageSchema, (await it.next()).value!);
    assert.match(welcome.content, /^Welcome/);
    assert.equal(sub.statusNow?.(), undefined, "still open");
    ctl.abort();
    assert.equal((await sub.status).code, Code.CANCELLED);
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
    async function* body() {
      yield sendBody("streamed")[0];
    }
    const r = await drain(
      streamed.call(SEND, body(), {
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
  } finally {
    await edge.close();
    await draining.close();
  }
});
