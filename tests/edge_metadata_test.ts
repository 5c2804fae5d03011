/**
 * Metadata, trailers, rich error details and deadlines across the edge, in
 * both protocols, against the fixture core (it echoes what it received).
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import {
  ChatService,
  MessageSchema,
  SendMessageRequestSchema,
} from "../gen/chat_pb.ts";
import { startFixtureEdge } from "./fixtures/edge_stack.ts";
import { grpcWebBody, readGrpcWeb } from "./fixtures/edge_raw.ts";

const SEND = "/chat.ChatService/SendMessage";
const sendBody = (content: string) =>
  grpcWebBody([
    toBinary(
      SendMessageRequestSchema,
      create(SendMessageRequestSchema, { user: "a", room: "r", content }),
    ),
  ]);

Deno.test("edge forwards only allow-listed request headers as metadata", async () => {
  await using stack = await startFixtureEdge();
  const res = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: {
      "content-type": "application/grpc-web+proto",
      "custom-header-1": "one",
      authorization: "Bearer tok",
      "x-user-agent": "grpc-web-javascript/0.1",
      cookie: "session=secret",
      "x-grpc-web": "1",
      "connect-protocol-version": "1",
      "x-forwarded-for": "10.1.1.1",
      "grpc-encoding": "gzip",
    },
    body: sendBody("hi"),
  });
  assert.equal((await readGrpcWeb(res)).grpcStatus, 0);
  const md = stack.core.lastMetadata();
  assert.equal(md["custom-header-1"], "one");
  assert.equal(md.authorization, "Bearer tok");
  assert.equal(md["x-user-agent"], "grpc-web-javascript/0.1");
  for (
    const h of [
      "cookie",
      "x-grpc-web",
      "connect-protocol-version",
      "x-forwarded-for",
      "origin",
    ]
  ) {
    assert.equal(md[h], undefined, h);
  }
  assert.notEqual(md["grpc-encoding"], "gzip");
});

Deno.test("edge gRPC-Web: response headers as HTTP headers, trailers in the trailer frame", async () => {
  await using stack = await startFixtureEdge();
  const r = await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "custom-header-1": "hv",
      },
      body: sendBody("hi"),
    }),
  );
  assert.equal(r.headers.get("custom-header-1"), "hv");
  assert.equal(r.trailers?.["grpc-status"], "0");
  assert.equal(r.trailers?.["x-trailer-echo"], "hv");
});

Deno.test("edge gRPC-Web: a trailers-only error is headers-only with percent-encoded grpc-message", async () => {
  await using stack = await startFixtureEdge();
  const res = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: {
      "content-type": "application/grpc-web-text",
      "custom-header-1": "t",
    },
    body: new TextEncoder().encode(
      btoa(String.fromCharCode(...sendBody("trailers-only"))),
    ),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("grpc-status"), "9");
  assert.equal(
    res.headers.get("grpc-message"),
    "precondition %E2%9C%97 failed: 100%25",
  );
  assert.equal(res.headers.get("x-trailer-echo"), "t");
  assert.equal((await res.arrayBuffer()).byteLength, 0);
});

async function expectDetail(transport: Transport) {
  const client = createClient(ChatService, transport);
  const err = await client.sendMessage({
    user: "a",
    room: "r",
    content: "fail-with-details",
  }, {
    headers: { "custom-header-1": "d" },
  }).then(() => undefined, (e) => ConnectError.from(e));
  assert.ok(err);
  assert.equal(err.code, Code.FailedPrecondition);
  assert.equal(err.rawMessage, "with details");
  assert.deepEqual(err.findDetails(MessageSchema).map((m) => m.content), [
    "the detail",
  ]);
  assert.equal(err.metadata.get("x-trailer-echo"), "d");
}

Deno.test("edge passes grpc-status-details-bin to gRPC-Web clients", async () => {
  await using stack = await startFixtureEdge();
  await expectDetail(
    createGrpcWebTransport({ baseUrl: stack.url, fetch: stack.fetch }),
  );
});

Deno.test("edge turns grpc-status-details-bin into Connect error details", async () => {
  await using stack = await startFixtureEdge();
  await expectDetail(
    createConnectTransport({ baseUrl: stack.url, fetch: stack.fetch }),
  );
});

Deno.test("edge Connect: response headers and trailers reach connect-web", async () => {
  await using stack = await startFixtureEdge();
  const client = createClient(
    ChatService,
    createConnectTransport({ baseUrl: stack.url, fetch: stack.fetch }),
  );
  let headers: Headers | undefined;
  let trailers: Headers | undefined;
  await client.sendMessage({ user: "a", room: "r", content: "hi" }, {
    headers: { "custom-header-1": "c" },
    onHeader: (h) => headers = h,
    onTrailer: (t) => trailers = t,
  });
  assert.equal(headers?.get("custom-header-1"), "c");
  assert.equal(trailers?.get("x-trailer-echo"), "c");
});

Deno.test("edge propagates grpc-timeout and connect-timeout-ms to the core's deadline", async () => {
  await using stack = await startFixtureEdge();
  const r = await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "grpc-timeout": "7S",
      },
      body: sendBody("hi"),
    }),
  );
  assert.equal(r.grpcStatus, 0);
  const grpcLeft = stack.core.lastDeadlineMs()!;
  assert.ok(grpcLeft > 6000 && grpcLeft <= 7000, `deadline ${grpcLeft}`);
  const res = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "connect-timeout-ms": "4000",
    },
    body: JSON.stringify({ user: "a", room: "r", content: "hi" }),
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const connectLeft = stack.core.lastDeadlineMs()!;
  assert.ok(
    connectLeft > 3000 && connectLeft <= 4000,
    `deadline ${connectLeft}`,
  );
});

Deno.test("edge gRPC-Web: a core that never answers is cut at the deadline", async () => {
  await using stack = await startFixtureEdge();
  const t0 = performance.now();
  const r = await readGrpcWeb(
    await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "grpc-timeout": "200m",
      },
      body: sendBody("hang"),
    }),
  );
  assert.equal(r.grpcStatus, 4);
  assert.ok(performance.now() - t0 < 2000);
});
