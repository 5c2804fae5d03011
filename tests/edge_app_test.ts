/**
 * The edge app's HTTP surface: CORS as the seed's Envoy route, /healthz,
 * and edge/main.ts started with only --allow-net --allow-env (and stopped).
 *
 * @module
 */
import assert from "node:assert/strict";
import { CORS_MAX_AGE } from "../edge/cors.ts";
import { startCoreServer } from "../server/server.ts";
import { startCoreEdge, startEdge } from "./fixtures/edge_stack.ts";
import { grpcWebBody, readGrpcWeb } from "./fixtures/edge_raw.ts";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { MessageSchema, SendMessageRequestSchema } from "../gen/chat_pb.ts";
import { openWsCall } from "../web/ws_call.ts";
import { spawnEdgeMain } from "./fixtures/edge_main.ts";

const SEND = "/chat.ChatService/SendMessage";

Deno.test("edgeCors() answers a gRPC-Web preflight like the seed's Envoy config", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(stack.url + SEND, {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "POST",
      "access-control-request-headers":
        "content-type,x-grpc-web,x-user-agent,grpc-timeout,connect-protocol-version",
    },
  });
  await res.body?.cancel();
  assert.ok(res.status === 204 || res.status === 200, `status ${res.status}`);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  const methods = res.headers.get("access-control-allow-methods")!.split(",")
    .map((s) => s.trim());
  assert.deepEqual(methods, ["GET", "PUT", "DELETE", "POST", "OPTIONS"]);
  const allowed = res.headers.get("access-control-allow-headers")!.split(",")
    .map((s) => s.trim());
  for (
    const h of [
      "keep-alive",
      "user-agent",
      "cache-control",
      "content-type",
      "content-transfer-encoding",
      "custom-header-1",
      "x-accept-content-transfer-encoding",
      "x-accept-response-streaming",
      "x-user-agent",
      "x-grpc-web",
      "grpc-timeout",
      "connect-protocol-version",
      "connect-timeout-ms",
    ]
  ) assert.ok(allowed.includes(h), h);
  assert.equal(res.headers.get("access-control-max-age"), String(CORS_MAX_AGE));
});

Deno.test("edgeCors() exposes grpc-status and grpc-message on actual responses", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: {
      origin: "https://app.example",
      "content-type": "application/grpc-web+proto",
    },
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
  const exposed = res.headers.get("access-control-expose-headers")!.split(",")
    .map((s) => s.trim());
  for (
    const h of [
      "grpc-status",
      "grpc-message",
      "grpc-status-details-bin",
      "custom-header-1",
    ]
  ) {
    assert.ok(exposed.includes(h), h);
  }
  assert.equal((await readGrpcWeb(res)).grpcStatus, 0);
});

Deno.test("edgeCors() with an origin list allows only those origins", async () => {
  await using stack = await startCoreEdge({
    allowedOrigins: ["https://good.example"],
  });
  const ask = async (origin: string) => {
    const res = await stack.fetch(stack.url + SEND, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST" },
    });
    await res.body?.cancel();
    return res.headers.get("access-control-allow-origin");
  };
  assert.equal(await ask("https://good.example"), "https://good.example");
  assert.equal(await ask("https://evil.example"), null);
});

Deno.test("GET /healthz is 200 while the core answers and 503 once it is gone", async () => {
  await using stack = await startCoreEdge();
  const up = await stack.fetch(`${stack.url}/healthz`);
  assert.equal(up.status, 200);
  assert.deepEqual(await up.json(), { status: "ok", upstream: "up" });
  await stack.core.shutdown(100);
  const down = await stack.fetch(`${stack.url}/healthz`);
  assert.equal(down.status, 503);
  assert.deepEqual(await down.json(), {
    status: "unavailable",
    upstream: "down",
  });
});

Deno.test("GET /healthz is 503 when the upstream port has nothing listening", async () => {
  const core = await startCoreServer({ port: 0 });
  const port = core.port;
  await core.shutdown(100);
  await using edge = startEdge(`http://127.0.0.1:${port}`);
  const res = await edge.fetch(`${edge.url}/healthz`);
  assert.equal(res.status, 503);
  await res.body?.cancel();
});

/** Kills an edge/main.ts child if it still runs, and lets go of its output. */
async function stopEdgeMain(
  child: Deno.ChildProcess,
  lines: ReadableStreamDefaultReader<string>,
) {
  try {
    child.kill("SIGKILL");
  } catch { /* already gone */ }
  await child.status;
  await lines.cancel().catch(() => {});
}

/** A Connect JSON SendMessage through the edge on `port` is answered with an id. */
async function sendsThroughConnect(port: string, client: Deno.HttpClient) {
  const res = await fetch(`http://127.0.0.1:${port}${SEND}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "main", room: "r", content: "hello" }),
    client,
  } as RequestInit);
  assert.match((await res.json()).messageId, /^msg_\d+$/);
}

Deno.test("edge/main.ts serves with only --allow-net --allow-env and stops on SIGTERM", async () => {
  const core = await startCoreServer({ port: 0 });
  const { child, lines, port } = await spawnEdgeMain(core.port, {
    stderr: "piped",
  });
  const client = Deno.createHttpClient({});
  try {
    await sendsThroughConnect(port, client);
    child.kill("SIGTERM");
    const status = await child.status;
    assert.equal(status.code, 0);
    lines.releaseLock();
    await child.stdout.cancel().catch(() => {});
  } finally {
    client.close();
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.stderr.cancel().catch(() => {});
    await child.status;
    await core.shutdown(100);
  }
});

Deno.test("edge/main.ts with EDGE_WEBSOCKET_BRIDGE=off answers /ws 404 saying why; Connect calls still work", async () => {
  const core = await startCoreServer({ port: 0, aliveIntervalMs: 0 });
  const { child, lines, port } = await spawnEdgeMain(core.port, {
    env: { EDGE_WEBSOCKET_BRIDGE: "off" },
  });
  const client = Deno.createHttpClient({});
  try {
    const upgrade = await fetch(`http://127.0.0.1:${port}/ws`, {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
      },
      client,
    } as RequestInit);
    assert.equal(upgrade.status, 404);
    assert.match(await upgrade.text(), /WebSocket bridge is off/);
    const call = openWsCall(`ws://127.0.0.1:${port}/ws`, {
      path: "/chat.ChatService/Chat",
    });
    assert.equal((await call.status).code, 14);
    await sendsThroughConnect(port, client);
  } finally {
    client.close();
    await stopEdgeMain(child, lines);
    await core.shutdown(100);
  }
});

Deno.test("edge/main.ts on SIGTERM ends a WebSocket bridge call UNAVAILABLE with its status frame", async () => {
  const core = await startCoreServer({ port: 0, aliveIntervalMs: 0 });
  const { child, lines, port, seen: started } = await spawnEdgeMain(
    core.port,
  );
  try {
    let seen = started;
    const call = openWsCall(`ws://127.0.0.1:${port}/ws`, {
      path: "/chat.ChatService/Chat",
    });
    call.send(toBinary(
      MessageSchema,
      create(MessageSchema, { user: "ann", room: "r", content: "hi" }),
    ));
    const echo = await call.messages[Symbol.asyncIterator]().next();
    assert.equal(fromBinary(MessageSchema, echo.value!).content, "Echo: hi");
    child.kill("SIGTERM");
    const status = await call.status;
    assert.deepEqual([status.code, status.message], [
      14,
      "edge is shutting down",
    ]);
    assert.equal((await child.status).code, 0);
    for (let r = await lines.read(); !r.done; r = await lines.read()) {
      seen += r.value;
    }
    assert.match(seen, /call websocket \/chat\.ChatService\/Chat UNAVAILABLE/);
  } finally {
    await stopEdgeMain(child, lines);
    await core.shutdown(100);
  }
});
