/**
 * A Connect unary or server-streaming call reads its one request message
 * before the call starts, where connect-es's router does not apply the
 * deadline: a body still coming in when `connect-timeout-ms` passes ends
 * the call deadline_exceeded then. Such a call used to wait for the rest
 * of the body for ever, holding its request at the edge.
 */
import assert from "node:assert/strict";
import { startCoreEdge } from "./fixtures/edge_stack.ts";

const enc = new TextEncoder();

const cases = [
  {
    what: "unary JSON, body of declared length",
    path: "/chat.ChatService/SendMessage",
    type: "application/json",
    body: enc.encode('{"user":"u","room":"r","content":"slow body"}'),
    chunked: false,
  },
  {
    what: "unary JSON, chunked body",
    path: "/chat.ChatService/SendMessage",
    type: "application/json",
    body: enc.encode('{"user":"u","room":"r","content":"slow body"}'),
    chunked: true,
  },
  {
    what: "server streaming",
    path: "/chat.ChatService/SubscribeMessages",
    type: "application/connect+json",
    body: (() => {
      const json = enc.encode('{"user":"u","room":"r"}');
      const out = new Uint8Array(5 + json.byteLength);
      new DataView(out.buffer).setUint32(1, json.byteLength);
      out.set(json, 5);
      return out;
    })(),
    chunked: false,
  },
];

for (const c of cases) {
  Deno.test(`edge Connect ${c.what}: a request body still coming in at connect-timeout-ms ends the call deadline_exceeded then`, async () => {
    await using stack = await startCoreEdge();
    const port = Number(new URL(stack.url).port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const from = performance.now();
      const half = c.body.subarray(0, c.body.byteLength >> 1);
      await conn.write(enc.encode(
        `POST ${c.path} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
          `connect-timeout-ms: 300\r\ncontent-type: ${c.type}\r\n` +
          (c.chunked
            ? "transfer-encoding: chunked\r\n\r\n" +
              `${half.byteLength.toString(16)}\r\n`
            : `content-length: ${c.body.byteLength}\r\n\r\n`),
      ));
      // Half the body, and the rest never.
      await conn.write(half);
      if (c.chunked) await conn.write(enc.encode("\r\n"));
      const buf = new Uint8Array(4096);
      let timer: ReturnType<typeof setTimeout> | undefined;
      let answer = "";
      await Promise.race([
        (async () => {
          while (!/deadline_exceeded/.test(answer)) {
            const n = await conn.read(buf);
            if (n === null) break;
            answer += new TextDecoder().decode(buf.subarray(0, n));
          }
        })(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer 3 s after the deadline`)),
            3300,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      const ms = performance.now() - from;
      assert.match(
        answer,
        /"code":"deadline_exceeded","message":"deadline exceeded while reading the request"/,
      );
      assert.ok(ms >= 250 && ms < 3000, `answered after ${ms} ms`);
    } finally {
      conn.close();
    }
  });
}
