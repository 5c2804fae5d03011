/**
 * Who may speak, through the edge: tokens the tests sign, forwarded on
 * gRPC-Web and Connect (connect-web) and in the WebSocket bridge's header
 * frame; the core's statuses in each protocol's form; the development token
 * endpoint; per-IP limits; HTTPS at the edge and TLS to the core.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type Interceptor,
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
import { openWsCall } from "../web/ws_call.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { encodeFrame, FLAG_DATA, FLAG_END } from "../protocol/ws_bridge.ts";
import { DEFAULT_EDGE_CONFIG } from "../edge/config.ts";
import { createEdgeApp } from "../edge/app.ts";
import { createUpstream } from "../edge/upstream/mod.ts";
import { hs256, SECRET, startTlsCore } from "./support/auth.ts";
import { startCoreEdge, waitUntil } from "./fixtures/edge_stack.ts";
import { grpcWebBody, wsClientFrame } from "./fixtures/edge_raw.ts";

const SEND = "/chat.ChatService/SendMessage";
const CHAT = "/chat.ChatService/Chat";

type Stack = { url: string; fetch: typeof fetch };

function bearerInterceptor(token: string | undefined): Interceptor {
  return (next) => (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

const transports = {
  "gRPC-Web": (stack: Stack, token?: string) =>
    createGrpcWebTransport({
      baseUrl: stack.url,
      fetch: stack.fetch,
      interceptors: [bearerInterceptor(token)],
    }),
  Connect: (stack: Stack, token?: string) =>
    createConnectTransport({
      baseUrl: stack.url,
      fetch: stack.fetch,
      interceptors: [bearerInterceptor(token)],
    }),
};

const authedStack = (edge = {}) =>
  startCoreEdge(edge, { jwtSecret: SECRET, jwtLeewaySeconds: 0 });

async function codeOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected a failure");
}

for (const [name, transport] of Object.entries(transports)) {
  Deno.test(`edge ${name}: the token is forwarded, an empty user becomes the token's`, async () => {
    await using stack = await authedStack();
    const watcher = createClient(
      ChatService,
      transport(stack, await hs256({ sub: "watcher" })),
    );
    const ctl = new AbortController();
    const it = watcher.subscribeMessages({ room: "lobby", user: "" }, {
      signal: ctl.signal,
    })[Symbol.asyncIterator]();
    assert.match((await it.next()).value!.content, /lobby, watcher/);
    const alice = createClient(
      ChatService,
      transport(stack, await hs256({ sub: "alice" })),
    );
    await alice.sendMessage({ user: "", room: "lobby", content: name });
    const got = (await it.next()).value!;
    assert.deepEqual([got.user, got.content], ["alice", name]);
    ctl.abort();
    await it.next().catch(() => {});
    await waitUntil(() => stack.core.snapshot().subscribers === 0);
  });

  Deno.test(`edge ${name}: no token is unauthenticated, another user permission_denied`, async () => {
    await using stack = await authedStack();
    const anonymous = createClient(ChatService, transport(stack));
    const req = { user: "alice", room: "lobby", content: "x" };
    const unauth = await codeOf(anonymous.sendMessage(req));
    assert.equal(unauth.code, Code.Unauthenticated);
    assert.match(unauth.rawMessage, /missing token/);
    const subErr = await codeOf(
      (async () => {
        for await (const _ of anonymous.subscribeMessages(req)) { /* none */ }
      })(),
    );
    assert.equal(subErr.code, Code.Unauthenticated);
    const mallory = createClient(
      ChatService,
      transport(stack, await hs256({ sub: "mallory" })),
    );
    const denied = await codeOf(mallory.sendMessage(req));
    assert.equal(denied.code, Code.PermissionDenied);
    assert.match(denied.rawMessage, /not "alice"/);
  });
}

Deno.test("edge Connect: unauthenticated is HTTP 401, permission_denied HTTP 403, with Connect codes", async () => {
  await using stack = await authedStack();
  const post = (headers: Record<string, string>) =>
    stack.fetch(`${stack.url}${SEND}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ user: "alice", room: "lobby", content: "x" }),
    });
  const none = await post({});
  assert.equal(none.status, 401);
  assert.equal((await none.json()).code, "unauthenticated");
  const other = await post({
    authorization: `Bearer ${await hs256({ sub: "bob" })}`,
  });
  assert.equal(other.status, 403);
  assert.equal((await other.json()).code, "permission_denied");
  const ok = await post({
    authorization: `Bearer ${await hs256({ sub: "alice" })}`,
  });
  assert.equal(ok.status, 200);
  assert.match((await ok.json()).messageId, /^msg_\d+$/);
});

Deno.test("edge gRPC-Web: a raw call without a token gets grpc-status 16", async () => {
  await using stack = await authedStack();
  const res = await stack.fetch(`${stack.url}${SEND}`, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto" },
    body: grpcWebBody([
      toBinary(
        SendMessageRequestSchema,
        create(SendMessageRequestSchema, {
          user: "a",
          room: "r",
          content: "c",
        }),
      ),
    ]),
  });
  await res.body?.cancel();
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("grpc-status"), "16");
});

function wsUrl(stack: Stack): string {
  return stack.url.replace(/^http/, "ws") + "/ws";
}

function chatMessage(user: string, content: string) {
  return toBinary(
    MessageSchema,
    create(MessageSchema, { user, room: "lobby", content }),
  );
}

/** One Chat call over the bridge: a message, its echo, a clean end. */
async function chatOnce(stack: Stack, content: string): Promise<void> {
  const ws = openWsCall(wsUrl(stack), { path: CHAT });
  ws.send(chatMessage("u", content));
  const echo = await ws.messages[Symbol.asyncIterator]().next();
  assert.equal(
    fromBinary(MessageSchema, echo.value!).content,
    `Echo: ${content}`,
  );
  ws.closeSend();
  for await (const _ of ws.messages) { /* drained */ }
  assert.equal((await ws.status).code, 0);
}

Deno.test("edge WebSocket bridge: the header frame's authorization reaches the core", async () => {
  await using stack = await authedStack();
  const watcher = createClient(
    ChatService,
    transports.Connect(stack, await hs256({ sub: "watcher" })),
  );
  const ctl = new AbortController();
  const it = watcher.subscribeMessages({ room: "lobby", user: "" }, {
    signal: ctl.signal,
  })[Symbol.asyncIterator]();
  await it.next();

  const token = await hs256({ sub: "alice" });
  const call = openWsCall(wsUrl(stack), {
    path: CHAT,
    metadata: { authorization: `Bearer ${token}` },
  });
  call.send(chatMessage("", "via the bridge"));
  call.closeSend();
  const echoes = [];
  for await (const m of call.messages) {
    echoes.push(fromBinary(MessageSchema, m));
  }
  assert.equal((await call.status).code, 0);
  assert.deepEqual(echoes.map((m) => m.content), ["Echo: via the bridge"]);
  const got = (await it.next()).value!;
  assert.deepEqual([got.user, got.content], ["alice", "via the bridge"]);

  const anonymous = openWsCall(wsUrl(stack), { path: CHAT });
  anonymous.send(chatMessage("alice", "no"));
  const noToken = await anonymous.status;
  assert.equal(noToken.code, 16);
  assert.match(noToken.message, /missing token/);

  const mallory = openWsCall(wsUrl(stack), {
    path: CHAT,
    metadata: { authorization: `Bearer ${await hs256({ sub: "mallory" })}` },
  });
  mallory.send(chatMessage("alice", "no"));
  const denied = await mallory.status;
  assert.equal(denied.code, 7);
  for await (const _ of anonymous.messages) { /* drained */ }
  for await (const _ of mallory.messages) { /* drained */ }
  ctl.abort();
  await it.next().catch(() => {});
});

Deno.test("edge WebSocket bridge: an authorization with spaces at either end is read as fetch() reads the header, not reset by the core", async () => {
  await using stack = await authedStack();
  const token = await hs256({ sub: "alice" });
  for (
    const [value, code] of [
      [` Bearer ${token}\t`, 0],
      ["Bearer ", 16],
    ] as const
  ) {
    const call = openWsCall(wsUrl(stack), {
      path: CHAT,
      metadata: { authorization: value },
    });
    call.send(chatMessage("", "padded"));
    call.closeSend();
    for await (const _ of call.messages) { /* drained */ }
    const status = await call.status;
    assert.equal(
      status.code,
      code,
      `${JSON.stringify(value)}: ${status.message}`,
    );
  }
});

Deno.test("edge /auth/dev-token: with a dev secret, 200 with a token the core accepts; 400 without a user or for a server name", async () => {
  await using stack = await authedStack({ devJwtSecret: SECRET });
  const res = await stack.fetch(`${stack.url}/auth/dev-token?user=carol`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("cache-control"), "no-store");
  const { token } = await res.json();
  const payload = JSON.parse(atob(token.split(".")[1]));
  assert.equal(payload.sub, "carol");
  assert.ok(Math.abs(payload.exp - Date.now() / 1000 - 3600) < 60);
  const client = createClient(ChatService, transports.Connect(stack, token));
  await client.sendMessage({ user: "", room: "lobby", content: "dev" });
  const bad = await stack.fetch(`${stack.url}/auth/dev-token`);
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error, /user/);
  // A token for a name the server speaks as would only be refused by the core.
  for (const user of ["System", "server"]) {
    const reserved = await stack.fetch(
      `${stack.url}/auth/dev-token?user=${user}`,
    );
    assert.equal(reserved.status, 400);
    assert.match((await reserved.json()).error, /reserved for the server/);
  }
});

Deno.test("edge /auth/dev-token: --dev-jwt-issuer and --dev-jwt-audience make tokens a core with --jwt-issuer/--jwt-audience accepts", async () => {
  await using stack = await startCoreEdge({
    devJwtSecret: SECRET,
    devJwtIssuer: "https://dev.example",
    devJwtAudience: "chat",
  }, {
    jwtSecret: SECRET,
    jwtIssuer: "https://dev.example",
    jwtAudience: "chat",
  });
  const res = await stack.fetch(`${stack.url}/auth/dev-token?user=carol`);
  const { token } = await res.json();
  const payload = JSON.parse(atob(token.split(".")[1]));
  assert.equal(payload.iss, "https://dev.example");
  assert.equal(payload.aud, "chat");
  const client = createClient(ChatService, transports.Connect(stack, token));
  await client.sendMessage({ user: "", room: "lobby", content: "dev" });
});

Deno.test("edge /auth/dev-token: 204 without a dev secret (a 404 is a console error on the page)", async () => {
  await using stack = await authedStack();
  const res = await stack.fetch(`${stack.url}/auth/dev-token?user=carol`);
  assert.equal(res.status, 204);
  assert.equal(await res.text(), "");
});

Deno.test("edge --max-requests-per-ip: past the limit a call gets resource_exhausted in its protocol's form", async () => {
  await using stack = await startCoreEdge({ maxRequestsPerIp: 1 });
  const client = createClient(ChatService, transports.Connect(stack));
  const ctl = new AbortController();
  const it = client.subscribeMessages({ room: "r", user: "u" }, {
    signal: ctl.signal,
  })[Symbol.asyncIterator]();
  await it.next();
  const refused = await stack.fetch(`${stack.url}${SEND}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "u", room: "r", content: "x" }),
  });
  assert.equal(refused.status, 429);
  const body = await refused.json();
  assert.equal(body.code, "resource_exhausted");
  assert.match(body.message, /limit 1/);
  const grpcWeb = createClient(ChatService, transports["gRPC-Web"](stack));
  const err = await codeOf(
    grpcWeb.sendMessage({ user: "u", room: "r", content: "x" }),
  );
  assert.equal(err.code, Code.ResourceExhausted);
  // A native gRPC client gets a status it can read, not an HTTP 429.
  const native = await stack.fetch(`${stack.url}${SEND}`, {
    method: "POST",
    headers: { "content-type": "application/grpc+proto" },
    body: new Uint8Array(5),
  });
  await native.body?.cancel();
  assert.equal(native.status, 200);
  assert.equal(native.headers.get("content-type"), "application/grpc+proto");
  assert.equal(native.headers.get("grpc-status"), "8");
  ctl.abort();
  await it.next().catch(() => {});
  // Once the stream's response is over, its slot is free again.
  let sent = false;
  for (let i = 0; i < 50 && !sent; i++) {
    sent = await client.sendMessage({ user: "u", room: "r", content: "y" })
      .then(() => true, () => false);
    if (!sent) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(sent, "a call after the stream ended");
});

Deno.test("edge --max-websockets-per-ip: a second socket from the same IP is refused until the first ends", async () => {
  await using stack = await startCoreEdge({ maxWebSocketsPerIp: 1 });
  const first = openWsCall(wsUrl(stack), { path: CHAT });
  first.send(chatMessage("u", "hi"));
  await first.messages[Symbol.asyncIterator]().next();
  const second = openWsCall(wsUrl(stack), { path: CHAT });
  const refused = await second.status;
  assert.equal(refused.code, 14);
  first.closeSend();
  for await (const _ of first.messages) { /* drained */ }
  assert.equal((await first.status).code, 0);
  await chatOnce(stack, "again");
});

Deno.test("edge --max-websockets-per-ip: a socket whose client never answers the close frame keeps its slot until it is gone", async () => {
  await using stack = await startCoreEdge({ maxWebSocketsPerIp: 1 });
  const { port } = new URL(stack.url);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: +port });
  const encoder = new TextEncoder();
  await conn.write(encoder.encode(
    `GET /ws HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nupgrade: websocket\r\n` +
      "connection: Upgrade\r\nsec-websocket-version: 13\r\n" +
      "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
  ));
  await conn.write(
    wsClientFrame(0x1, encoder.encode(JSON.stringify({ path: SEND }))),
  );
  const request = toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "u", room: "r", content: "x" }),
  );
  await conn.write(wsClientFrame(0x2, encodeFrame(FLAG_DATA, request)));
  await conn.write(
    wsClientFrame(0x2, encodeFrame(FLAG_END, new Uint8Array(0))),
  );
  // Read up to the edge's close frame (opcode 8, after the status frame)
  // and never answer it.
  const buf = new Uint8Array(4096);
  let got = "";
  while (!/grpc-status: 0[\s\S]*\x88/.test(got)) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`closed after ${JSON.stringify(got)}`);
    got += String.fromCharCode(...buf.subarray(0, n));
  }
  try {
    // The call is over but its socket is still open: it still counts.
    await new Promise((r) => setTimeout(r, 300));
    const second = openWsCall(wsUrl(stack), { path: CHAT });
    const timer = setTimeout(() => second.cancel(), 2000);
    const refused = await second.status;
    clearTimeout(timer);
    assert.equal(refused.code, 14, refused.message);
  } finally {
    conn.close();
  }
  // Gone for good: its slot is free again.
  let served = false;
  for (let i = 0; i < 50 && !served; i++) {
    served = await chatOnce(stack, "after").then(() => true, () => false);
    if (!served) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(served, "a socket after the silent one was gone");
});

Deno.test("edge --trust-proxy: the per-IP limit counts the client X-Forwarded-For names, and only when set", async () => {
  const open = (stack: Stack, forwardedFor: string) => {
    const ctl = new AbortController();
    const res = stack.fetch(`${stack.url}/chat.ChatService/SubscribeMessages`, {
      method: "POST",
      headers: {
        "content-type": "application/connect+json",
        "x-forwarded-for": forwardedFor,
      },
      body: encodeEnvelope(
        0,
        new TextEncoder().encode(JSON.stringify({ room: "r", user: "u" })),
      ),
      signal: ctl.signal,
    });
    return { res, ctl };
  };
  /** "open", or "refused": the stream's first envelope ends it (flag 2). */
  const stateOf = async (call: ReturnType<typeof open>) => {
    const res = await call.res;
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    if (!(value![0] & 0x02)) return "open";
    assert.match(new TextDecoder().decode(value), /resource_exhausted/);
    return "refused";
  };
  for (const trustProxy of [1, 0]) {
    await using stack = await startCoreEdge({
      maxRequestsPerIp: 1,
      trustProxy,
    });
    // Each proxy-written last entry is another client; what the client
    // wrote itself (the first entry) is not believed.
    const a = open(stack, "198.51.100.1, 203.0.113.1");
    assert.equal(await stateOf(a), "open");
    const b = open(stack, "198.51.100.1, 203.0.113.2");
    assert.equal(
      await stateOf(b),
      trustProxy ? "open" : "refused",
      `trust ${trustProxy}`,
    );
    const again = open(stack, "203.0.113.2, 203.0.113.1");
    assert.equal(await stateOf(again), "refused", `trust ${trustProxy}`);
    for (const call of [a, b, again]) {
      await (await call.res).body?.cancel().catch(() => {});
      call.ctl.abort();
    }
  }
});

Deno.test("edge --max-websockets-per-ip: a refused upgrade gives its slot back", async () => {
  await using stack = await startCoreEdge({ maxWebSocketsPerIp: 1 });
  const { hostname, port } = new URL(stack.url);
  // `upgrade: websocket` without `connection: upgrade` or a key: the
  // bridge takes a slot, then Deno.upgradeWebSocket() refuses the request.
  for (let i = 0; i < 2; i++) {
    const conn = await Deno.connect({ hostname, port: Number(port) });
    await conn.write(new TextEncoder().encode(
      `GET /ws HTTP/1.1\r\nhost: ${hostname}\r\nupgrade: websocket\r\nconnection: close\r\n\r\n`,
    ));
    let answer = "";
    const buf = new Uint8Array(4096);
    for (let n; (n = await conn.read(buf)) !== null;) {
      answer += new TextDecoder().decode(buf.subarray(0, n));
    }
    conn.close();
    assert.match(answer, /^HTTP\/1\.1 400 /, answer);
    assert.match(answer, /not a WebSocket upgrade/);
  }
  await chatOnce(stack, "after");
});

Deno.test("edge over HTTPS in front of a core over TLS, with a token", async () => {
  const { core, cert, key, close } = await startTlsCore({ jwtSecret: SECRET });
  const upstreamUrl = `https://localhost:${core.port}`;
  const config = Object.freeze({
    ...DEFAULT_EDGE_CONFIG,
    upstream: [upstreamUrl],
  });
  const upstream = createUpstream("h2", upstreamUrl, {
    maxMessageBytes: config.maxMessageBytes,
    ca: cert,
  });
  const app = createEdgeApp({ upstream, config });
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert,
    key,
    onListen: () => {},
  }, app.fetch);
  const client = Deno.createHttpClient({ caCerts: [cert] });
  try {
    const stack: Stack = {
      url: `https://localhost:${server.addr.port}`,
      fetch: (input, init) =>
        fetch(input, { ...init, client } as unknown as RequestInit),
    };
    for (const transport of Object.values(transports)) {
      const chat = createClient(
        ChatService,
        transport(stack, await hs256({ sub: "alice" })),
      );
      const res = await chat.sendMessage({
        user: "",
        room: "lobby",
        content: "tls all the way",
      });
      assert.match(res.messageId, /^msg_\d+$/);
    }
    const plain = await fetch(`http://127.0.0.1:${server.addr.port}/healthz`)
      .then(() => "answered", () => "refused");
    assert.equal(plain, "refused");
  } finally {
    client.close();
    await upstream.close();
    await server.shutdown();
    await close();
  }
});

Deno.test("edge --max-requests-per-ip: an open WebSocket counts under --max-websockets-per-ip, not as a request", async () => {
  await using stack = await startCoreEdge({ maxRequestsPerIp: 1 });
  const ws = openWsCall(wsUrl(stack), { path: CHAT });
  ws.send(chatMessage("u", "hi"));
  await ws.messages[Symbol.asyncIterator]().next();
  const client = createClient(ChatService, transports.Connect(stack));
  await client.sendMessage({ user: "u", room: "r", content: "while open" });
  ws.closeSend();
  for await (const _ of ws.messages) { /* drained */ }
});

Deno.test("edge: the core's rate limit reaches browsers as resource_exhausted with its retry hint", async () => {
  await using stack = await startCoreEdge({}, {
    jwtSecret: SECRET,
    rateLimit: 1,
    rateBurst: 1,
  });
  const token = await hs256({ sub: "alice" });
  const post = (type: string, body: BodyInit) =>
    stack.fetch(`${stack.url}${SEND}`, {
      method: "POST",
      headers: {
        "content-type": type,
        authorization: `Bearer ${token}`,
        origin: "https://page.example",
      },
      body,
    });
  const json = JSON.stringify({ user: "", room: "lobby", content: "x" });
  const first = await post("application/json", json);
  assert.equal(first.status, 200);
  await first.body?.cancel();
  const limited = await post("application/json", json);
  assert.equal(limited.status, 429);
  const error = await limited.json();
  assert.equal(error.code, "resource_exhausted");
  assert.match(error.message, /rate limit exceeded: retry after \d+ ms/);
  assert.match(limited.headers.get("retry-after-ms") ?? "", /^\d+$/);
  assert.match(
    limited.headers.get("access-control-expose-headers") ?? "",
    /retry-after-ms/,
  );
  const grpcWeb = await post(
    "application/grpc-web+proto",
    grpcWebBody([
      toBinary(
        SendMessageRequestSchema,
        create(SendMessageRequestSchema, {
          user: "",
          room: "lobby",
          content: "x",
        }),
      ),
    ]),
  );
  await grpcWeb.body?.cancel();
  assert.equal(grpcWeb.headers.get("grpc-status"), "8");
  assert.match(grpcWeb.headers.get("retry-after-ms") ?? "", /^\d+$/);
});
