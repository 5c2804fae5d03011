/**
 * Oversized forwarded metadata through the edge: the call that carries it
 * fails alone, in its protocol's form, and never reaches the core, so the
 * core never refuses the shared upstream connection (a GOAWAY would end
 * every other user's call on it). Real core, real sockets.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ChatService, SendMessageRequestSchema } from "../gen/chat_pb.ts";
import { openWsCall } from "../web/ws_call.ts";
import { startCoreEdge } from "./fixtures/edge_stack.ts";
import {
  connectJsonBody,
  grpcWebBody,
  readConnectStream,
  readGrpcWeb,
} from "./fixtures/edge_raw.ts";

const SEND = "/chat.ChatService/SendMessage";
const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";

/** Three allow-listed headers of `each` bytes: ~65 KB at 21,700. */
function bigHeaders(each: number): Record<string, string> {
  return {
    "x-request-id": "a".repeat(each),
    "x-user-agent": "b".repeat(each),
    "custom-header-1": "c".repeat(each),
  };
}

for (const upstreamClient of ["h2", "node"] as const) {
  Deno.test(`edge (${upstreamClient} upstream): oversized forwarded metadata fails its own call (Connect, gRPC-Web, WebSocket); a subscriber on the same upstream connection keeps receiving`, async () => {
    await using stack = await startCoreEdge({ upstreamClient });
    const client = createClient(
      ChatService,
      createConnectTransport({ baseUrl: stack.url, fetch: stack.fetch }),
    );
    const ctl = new AbortController();
    const victim = client.subscribeMessages({ room: "hdr", user: "ann" }, {
      signal: ctl.signal,
    })[Symbol.asyncIterator]();
    assert.equal(
      (await victim.next()).value!.content,
      "Welcome to room hdr, ann!",
    );
    let n = 0;
    /** A normal call, then the subscriber must see it. */
    async function victimStillReceives(after: string) {
      const content = `after ${after} ${n++}`;
      await client.sendMessage({ user: "bob", room: "hdr", content });
      const next = await victim.next();
      assert.equal(next.done, false, `subscriber ended after ${after}`);
      assert.equal(next.value!.content, content, `subscriber after ${after}`);
    }

    // Connect unary (JSON), one value over the per-value bound.
    const unary = await stack.fetch(`${stack.url}${SEND}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bigHeaders(21_700) },
      body: JSON.stringify({ room: "hdr", user: "eve", content: "unary" }),
    });
    const unaryBody = await unary.json();
    await victimStillReceives("Connect unary");
    assert.equal(unary.status, 429, JSON.stringify(unaryBody));
    assert.equal(unaryBody.code, "resource_exhausted");
    assert.match(
      unaryBody.message,
      /metadata (x-request-id|x-user-agent|custom-header-1) is 21700 bytes/,
    );

    // Connect server streaming: the error is an end-stream message of an
    // HTTP 200 answer.
    const streaming = await stack.fetch(`${stack.url}${SUBSCRIBE}`, {
      method: "POST",
      headers: {
        "content-type": "application/connect+json",
        ...bigHeaders(21_700),
      },
      body: connectJsonBody([{ room: "hdr", user: "eve" }]),
    });
    const { messages, end } = await readConnectStream(streaming);
    await victimStillReceives("Connect streaming");
    assert.equal(streaming.status, 200);
    assert.deepEqual(messages, []);
    assert.equal(end.error?.code, "resource_exhausted", JSON.stringify(end));
    assert.match(end.error?.message ?? "", /is 21700 bytes/);

    // Each value under the per-value bound, all together over the total.
    const total = await stack.fetch(`${stack.url}${SEND}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bigHeaders(7_000) },
      body: JSON.stringify({ room: "hdr", user: "eve", content: "total" }),
    });
    const totalBody = await total.json();
    assert.equal(total.status, 429, JSON.stringify(totalBody));
    assert.match(totalBody.message, /metadata is over 16384 bytes in all/);

    // gRPC-Web: a trailers-only answer.
    const grpcWeb = await readGrpcWeb(
      await stack.fetch(`${stack.url}${SEND}`, {
        method: "POST",
        headers: {
          "content-type": "application/grpc-web+proto",
          "x-grpc-web": "1",
          // ~65 KB in all (near what Deno.serve takes), the token first.
          authorization: `Bearer ${"t".repeat(21_700)}`,
          "x-user-agent": "u".repeat(21_700),
          "x-request-id": "r".repeat(21_700),
        },
        body: grpcWebBody([
          toBinary(
            SendMessageRequestSchema,
            create(SendMessageRequestSchema, { room: "hdr", content: "gw" }),
          ),
        ]),
      }),
    );
    await victimStillReceives("gRPC-Web");
    assert.equal(grpcWeb.httpStatus, 200);
    assert.deepEqual(grpcWeb.messages, []);
    assert.equal(grpcWeb.trailers, undefined, "trailers-only");
    assert.equal(grpcWeb.grpcStatus, 8, grpcWeb.grpcMessage);
    assert.match(grpcWeb.grpcMessage, /metadata authorization is 21707 bytes/);

    // The WebSocket bridge: its status frame.
    const ws = openWsCall(`${stack.url.replace("http", "ws")}/ws`, {
      path: SEND,
      metadata: { "x-request-id": "x".repeat(100_000) },
    });
    ws.send(
      toBinary(
        SendMessageRequestSchema,
        create(SendMessageRequestSchema, { room: "hdr", content: "ws" }),
      ),
    );
    ws.closeSend();
    const wsStatus = await ws.status;
    await victimStillReceives("WebSocket");
    assert.equal(wsStatus.code, 8, wsStatus.message);
    assert.match(wsStatus.message, /x-request-id/);

    // Nothing refused the connection: one, as at the start.
    // (node:http2's client does not count its connections.)
    assert.equal(stack.upstream.connections?.() ?? 1, 1);
    ctl.abort();
    await victim.next().catch(() => {});
  });
}
