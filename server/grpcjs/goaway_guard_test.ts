import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createChatClient } from "../../client/rpc.ts";
import { chatServiceDefinition } from "../../rpc/chat_service.ts";
import { GoawayDropper, listenWithGoawayGuard } from "./goaway_guard.ts";

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function frame(type: number, streamId: number, payload: number[]): number[] {
  const n = payload.length;
  return [
    n >> 16,
    (n >> 8) & 0xff,
    n & 0xff,
    type,
    0,
    0,
    0,
    0,
    streamId,
    ...payload,
  ];
}

const settings = frame(0x4, 0, []);
const headers = frame(0x1, 1, [0x82, 0x86, 0x84]);
const data = frame(0x0, 1, Array.from({ length: 300 }, (_, i) => i & 0xff));
const goaway = frame(0x7, 0, [0, 0, 0, 0, 0, 0, 0, 0]);
const goawayWithDebug = frame(0x7, 0, [0, 0, 0, 1, 0, 0, 0, 2, 104, 105]);
const ping = frame(0x6, 0, [1, 2, 3, 4, 5, 6, 7, 8]);

const input = new Uint8Array([
  ...PREFACE,
  ...settings,
  ...headers,
  ...goaway,
  ...data,
  ...goawayWithDebug,
  ...ping,
]);
const expected = new Uint8Array([
  ...PREFACE,
  ...settings,
  ...headers,
  ...data,
  ...ping,
]);

/** Feeds `input` cut at the given offsets; returns what passed and drops. */
function feed(cuts: number[]): { out: Uint8Array; dropped: number } {
  const dropper = new GoawayDropper();
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const at of [...cuts, input.length]) {
    parts.push(...dropper.filter(input.slice(from, at)));
    from = at;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return { out, dropped: dropper.dropped };
}

Deno.test("GoawayDropper.filter() drops GOAWAY frames and passes the rest byte for byte", () => {
  const { out, dropped } = feed([]);
  assert.deepEqual(out, expected);
  assert.equal(dropped, 2);
});

Deno.test("GoawayDropper.filter() gives the same bytes wherever reads split the stream", () => {
  for (let at = 1; at < input.length; at++) {
    assert.deepEqual(feed([at]).out, expected, `one cut at ${at}`);
  }
  const everyByte = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
  const { out, dropped } = feed(everyByte);
  assert.deepEqual(out, expected);
  assert.equal(dropped, 2);
});

Deno.test("GoawayDropper.filter() returns a chunk without GOAWAY as is, uncopied", () => {
  const dropper = new GoawayDropper();
  const first = new Uint8Array([...PREFACE, ...settings]);
  const second = new Uint8Array([...headers, ...data]);
  assert.equal(dropper.filter(first)[0], first);
  const parts = dropper.filter(second);
  assert.equal(parts.length, 1);
  assert.equal(parts[0], second);
});

Deno.test("listenWithGoawayGuard() serves grpc-js calls, sees the client's GOAWAY, shuts down clean", async () => {
  const server = new grpc.Server();
  let peer = "";
  server.addService(chatServiceDefinition, {
    SendMessage(
      call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      peer = call.getPeer();
      callback(null, { messageId: "msg_1" });
    },
  });
  const listener = await listenWithGoawayGuard(server, "127.0.0.1", 0);
  const client = createChatClient(`127.0.0.1:${listener.port}`);
  try {
    const res = await client.sendMessage({
      user: "u",
      content: "c",
      room: "r",
    });
    assert.equal(res.messageId, "msg_1");
    assert.match(peer, /^127\.0\.0\.1:\d+$/);
  } finally {
    client.close();
  }
  for (let i = 0; i < 100 && listener.goawaysDropped === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(listener.goawaysDropped, 1);
  await listener.close();
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
});
