/**
 * The edge's record of each call (`chat_edge_*` metrics and the one log line
 * per call) for the ways a call can end besides a clean answer: a client
 * that goes away mid-stream (curl killed, a fetch body cancelled, a socket
 * dropped without a WebSocket close frame), the Connect router's own
 * refusals, unknown methods and per-IP refusals. Each call must be recorded
 * once, with the code its client was told (CANCELLED when it left), and the
 * active-calls gauge must come back to where it was.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { SubscribeRequestSchema } from "../gen/chat_pb.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { encodeFrame, FLAG_DATA, FLAG_END } from "../protocol/ws_bridge.ts";
import type { Upstream } from "../edge/upstream/types.ts";
import {
  type EdgeStack,
  startCoreEdge,
  waitUntil,
} from "./fixtures/edge_stack.ts";

const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";
const encoder = new TextEncoder();

/** The edge's per-call log lines, as the fixture hands them over. */
class Lines {
  readonly all: string[] = [];
  readonly write = (line: string) => this.all.push(line);

  /** `protocol path CODE` of each line (text format). */
  calls(): string[] {
    return this.all.map((line) => line.split(" ").slice(2, 5).join(" "));
  }
}

/** The value of one sample line of the exposition, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.split(" ")[1]);
  }
  return undefined;
}

async function scrape(stack: EdgeStack): Promise<string> {
  return await (await stack.fetch(stack.url + "/metrics")).text();
}

/**
 * /metrics once the edge's calls have all ended; waits a little more so
 * that a second record of the same call would show too.
 */
async function settled(stack: EdgeStack, protocol: string): Promise<string> {
  const until = Date.now() + 3000;
  for (;;) {
    const text = await scrape(stack);
    const active = sample(
      text,
      `chat_edge_active_calls{protocol="${protocol}"}`,
    );
    if (active === 0) break;
    if (Date.now() > until) {
      assert.fail(`active ${protocol} calls stay at ${active}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 200));
  return await scrape(stack);
}

function calls(protocol: string, method: string, code: string): string {
  return `chat_edge_calls_total{protocol="${protocol}",method="${method}",code="${code}"}`;
}

const subscribeProto = () =>
  encodeEnvelope(
    0,
    toBinary(
      SubscribeRequestSchema,
      create(SubscribeRequestSchema, { room: "r", user: "u" }),
    ),
  );

/** A client frame as RFC 6455 wants it: final, masked (with a zero key). */
function clientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const head = payload.byteLength < 126
    ? [0x80 | opcode, 0x80 | payload.byteLength]
    : [
      0x80 | opcode,
      0x80 | 126,
      payload.byteLength >> 8,
      payload.byteLength & 0xff,
    ];
  const frame = new Uint8Array(head.length + 4 + payload.byteLength);
  frame.set(head);
  frame.set(payload, head.length + 4);
  return frame;
}

Deno.test("edge records: a WebSocket bridge client that drops its connection without a close frame ends CANCELLED", async () => {
  const lines = new Lines();
  await using stack = await startCoreEdge({ logFormat: "text" }, {}, {
    writeLine: lines.write,
  });
  const { port } = new URL(stack.url);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: +port });
  try {
    await conn.write(encoder.encode(
      `GET /ws HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nupgrade: websocket\r\n` +
        "connection: Upgrade\r\nsec-websocket-version: 13\r\n" +
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ));
    await conn.write(clientFrame(
      0x1,
      encoder.encode(JSON.stringify({ path: SUBSCRIBE })),
    ));
    await conn.write(
      clientFrame(0x2, encodeFrame(FLAG_DATA, subscribeProto().subarray(5))),
    );
    await conn.write(
      clientFrame(0x2, encodeFrame(FLAG_END, new Uint8Array(0))),
    );
    // The 101 and the first data frame (the welcome).
    const buf = new Uint8Array(4096);
    let got = "";
    while (!/\r\n\r\n[\s\S]*r, u/.test(got)) {
      const n = await conn.read(buf);
      if (n === null) throw new Error(`closed after ${JSON.stringify(got)}`);
      got += new TextDecoder().decode(buf.subarray(0, n));
    }
    assert.match(got, /^HTTP\/1\.1 101/);
    assert.equal(stack.core.snapshot().subscribers, 1);
  } finally {
    // No close frame: the tab is gone.
    conn.close();
  }
  await waitUntil(
    () => stack.core.snapshot().subscribers === 0,
    3000,
    "the core's subscriber to go",
  );
  const text = await settled(stack, "websocket");
  assert.equal(
    sample(text, calls("websocket", SUBSCRIBE.slice(1), "CANCELLED")),
    1,
    text,
  );
  assert.equal(sample(text, "chat_edge_websockets"), 0);
  assert.deepEqual(lines.calls(), [`websocket ${SUBSCRIBE} CANCELLED`]);
});

Deno.test("edge records: a WebSocket bridge call the edge itself fails ends INTERNAL", async () => {
  const lines = new Lines();
  // An upstream that throws instead of answering with a status: a bug in
  // the edge, which its client is told as INTERNAL.
  const broken = (upstream: Upstream): Upstream => ({
    ...upstream,
    call: () => {
      throw new Error("broken upstream");
    },
    close: () => upstream.close(),
    healthy: () => upstream.healthy(),
  });
  await using stack = await startCoreEdge({ logFormat: "text" }, {}, {
    writeLine: lines.write,
    wrapUpstream: broken,
  });
  const ws = new WebSocket(stack.url.replace("http", "ws") + "/ws");
  ws.binaryType = "arraybuffer";
  const frames: ArrayBuffer[] = [];
  ws.onmessage = (e) => frames.push(e.data);
  const closed = new Promise((resolve) => ws.onclose = resolve);
  await new Promise((resolve) => ws.onopen = resolve);
  const error = console.error;
  console.error = () => {}; // the edge's report of the bug
  try {
    ws.send(JSON.stringify({ path: SUBSCRIBE }));
    await closed;
  } finally {
    console.error = error;
  }
  assert.equal(frames.length, 1);
  const text = await settled(stack, "websocket");
  assert.equal(
    sample(text, calls("websocket", SUBSCRIBE.slice(1), "INTERNAL")),
    1,
    text,
  );
  assert.deepEqual(lines.calls(), [`websocket ${SUBSCRIBE} INTERNAL`]);
});
