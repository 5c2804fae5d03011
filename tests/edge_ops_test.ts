/**
 * Operating the edge: native gRPC clients get a trailers-only UNIMPLEMENTED
 * naming the core (grpc-js, curl over h2c, Python grpcio), `/metrics` in
 * Prometheus text (with and without a token), and one log line per call
 * from the edge process itself.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { createChatClient } from "../client/rpc.ts";
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "../gen/chat_pb.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { createEdgeApp } from "../edge/app.ts";
import { DEFAULT_EDGE_CONFIG } from "../edge/config.ts";
import { createUpstream } from "../edge/upstream/mod.ts";
import { startCoreServer } from "../server/server.ts";
import { testCertificate } from "./support/auth.ts";
import { startCoreEdge } from "./fixtures/edge_stack.ts";
import { readGrpcWeb } from "./fixtures/edge_raw.ts";
import { edgeArgs, spawnDeno } from "./fixtures/deno_process.ts";

const SEND = "/chat.ChatService/SendMessage";

function sendBody(content = "hi"): Uint8Array<ArrayBuffer> {
  return encodeEnvelope(
    0,
    toBinary(
      SendMessageRequestSchema,
      create(SendMessageRequestSchema, { user: "u", room: "r", content }),
    ),
  );
}

Deno.test("edge answers a grpc-js client with UNIMPLEMENTED naming the core, unary and streaming", async () => {
  await using stack = await startCoreEdge();
  const core = `http://127.0.0.1:${stack.core.port}`;
  const client = createChatClient(new URL(stack.url).host);
  try {
    const err = await client.sendMessage({ user: "u", room: "r", content: "c" })
      .then(() => undefined, (e: grpc.ServiceError) => e);
    assert.ok(err, "the call must fail");
    assert.equal(err.code, grpc.status.UNIMPLEMENTED, err.message);
    assert.equal(
      err.details,
      `this is a gRPC-Web/Connect gateway; call the core directly at ${core}`,
    );
    const stream = client.subscribeMessages({ user: "u", room: "r" });
    const streamErr = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on("data", () => {});
      stream.on("error", resolve);
    });
    assert.equal(streamErr.code, grpc.status.UNIMPLEMENTED);
    assert.match(streamErr.details, /call the core directly/);
  } finally {
    client.close();
  }
});

Deno.test("edge answers a grpc-js client over TLS (ALPN h2) with UNIMPLEMENTED too", async () => {
  const dir = await Deno.makeTempDir();
  const { cert, key } = await testCertificate(dir);
  const upstreamUrl = "http://127.0.0.1:1";
  const upstream = createUpstream("h2", upstreamUrl, {
    maxMessageBytes: 1 << 20,
  });
  const app = createEdgeApp({
    upstream,
    config: {
      ...DEFAULT_EDGE_CONFIG,
      upstream: [upstreamUrl],
      logFormat: "off",
    },
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert, key, onListen: () => {} },
    app.fetch,
  );
  const client = new grpc.Client(
    `localhost:${server.addr.port}`,
    grpc.credentials.createSsl(Buffer.from(cert)),
  );
  try {
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(
        SEND,
        (b: Uint8Array) => Buffer.from(b),
        (b: Buffer) => b,
        sendBody().subarray(5),
        (e) => resolve(e),
      )
    );
    assert.ok(err, "the call must fail");
    assert.equal(err.code, grpc.status.UNIMPLEMENTED, err.message);
    assert.match(
      err.details,
      /call the core directly at http:\/\/127\.0\.0\.1:1/,
    );
  } finally {
    client.close();
    await upstream.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("edge native gRPC answer is trailers-only over h2c (curl --http2-prior-knowledge)", async () => {
  await using stack = await startCoreEdge();
  const out = await new Deno.Command("curl", {
    args: [
      "-s",
      "-D",
      "-",
      "-o",
      "/dev/null",
      "--http2-prior-knowledge",
      "-H",
      "content-type: application/grpc",
      "-H",
      "te: trailers",
      "--data-binary",
      "@-",
      stack.url + SEND,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = out.stdin.getWriter();
  await w.write(sendBody());
  await w.close();
  const { stdout, stderr, code } = await out.output();
  const head = new TextDecoder().decode(stdout).toLowerCase();
  // curl's own words when it got no answer (it failed once under a loaded full run with no output).
  assert.equal(
    code,
    0,
    `curl exit ${code}: ${new TextDecoder().decode(stderr)}`,
  );
  assert.match(head, /^http\/2 200/);
  assert.match(head, /\ncontent-type: application\/grpc\r/);
  assert.match(head, /\ngrpc-status: 12\r/);
  assert.match(head, /\ngrpc-message: this is a grpc-web\/connect gateway/);
});

Deno.test("edge native gRPC answer is UNIMPLEMENTED for Python grpcio", async () => {
  const probe = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", "import grpc"],
    stderr: "null",
  }).output();
  assert.ok(
    probe.success,
    "python3-grpcio is missing: apt-get install python3-grpcio",
  );
  await using stack = await startCoreEdge();
  const script = `
import grpc, sys
ch = grpc.insecure_channel(sys.argv[1])
call = ch.unary_unary("${SEND}")
try:
    call(bytes.fromhex(sys.argv[2]), timeout=10)
    print("OK")
except grpc.RpcError as e:
    print(e.code().name)
    print(e.details())
ch.close()
`;
  const hex = Array.from(
    sendBody().subarray(5),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["-c", script, new URL(stack.url).host, hex],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const { stdout, stderr } = await child.output();
  const lines = new TextDecoder().decode(stdout).trim().split("\n");
  assert.equal(lines[0], "UNIMPLEMENTED", new TextDecoder().decode(stderr));
  assert.match(lines[1], /call the core directly at http:\/\/127\.0\.0\.1:/);
});

/** The value of one sample line of the exposition, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.split(" ")[1]);
  }
  return undefined;
}

Deno.test("edge /metrics: calls by protocol, method and code, histograms, gauges and bytes", async () => {
  await using stack = await startCoreEdge();
  for (let i = 0; i < 2; i++) {
    const r = await readGrpcWeb(
      await stack.fetch(stack.url + SEND, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto" },
        body: sendBody(),
      }),
    );
    assert.equal(r.grpcStatus, 0);
  }
  const connect = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "u", room: "r" }),
  });
  assert.equal((await connect.json()).code, "invalid_argument");
  // A path the edge does not serve is labelled "unknown", not by its name.
  const unknown = await readGrpcWeb(
    await stack.fetch(stack.url + "/no.Such/Method", {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: sendBody(),
    }),
  );
  assert.equal(unknown.grpcStatus, 12);

  const res = await stack.fetch(stack.url + "/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/plain; version=0.0.4/);
  const text = await res.text();
  const m = 'method="chat.ChatService/SendMessage"';
  assert.equal(
    sample(
      text,
      `chat_edge_calls_total{protocol="grpc-web",${m},code="OK"}`,
    ),
    2,
  );
  assert.equal(
    sample(
      text,
      `chat_edge_calls_total{protocol="connect",${m},code="INVALID_ARGUMENT"}`,
    ),
    1,
  );
  assert.equal(
    sample(
      text,
      'chat_edge_calls_total{protocol="grpc-web",method="unknown",code="UNIMPLEMENTED"}',
    ),
    1,
  );
  assert.doesNotMatch(text, /no\.Such/);
  assert.equal(
    sample(
      text,
      `chat_edge_call_duration_seconds_count{protocol="grpc-web",${m},code="OK"}`,
    ),
    2,
  );
  assert.equal(
    sample(
      text,
      `chat_edge_call_duration_seconds_bucket{le="+Inf",protocol="grpc-web",${m},code="OK"}`,
    ),
    2,
  );
  assert.equal(
    sample(text, 'chat_edge_active_calls{protocol="grpc-web"}'),
    0,
  );
  assert.ok(
    sample(text, 'chat_edge_received_bytes_total{protocol="grpc-web"}')! >=
      2 * sendBody().byteLength,
  );
  assert.ok(
    sample(text, 'chat_edge_sent_bytes_total{protocol="grpc-web"}')! > 0,
  );
  assert.equal(sample(text, "chat_edge_upstream_connections"), 1);
  assert.equal(sample(text, "chat_edge_upstream_resends_total"), 0);
  assert.ok(sample(text, "chat_edge_resident_memory_bytes")! > 0);
  assert.equal(sample(text, "chat_edge_websockets"), 0);
});

Deno.test("edge /metrics: counts open WebSockets and in-flight streams", async () => {
  await using stack = await startCoreEdge();
  const ws = new WebSocket(stack.url.replace("http", "ws") + "/ws");
  ws.binaryType = "arraybuffer";
  const firstFrame = new Promise((resolve) => ws.onmessage = resolve);
  await new Promise((resolve) => ws.onopen = resolve);
  ws.send(JSON.stringify({ path: "/chat.ChatService/SubscribeMessages" }));
  const sub = toBinary(
    SubscribeRequestSchema,
    create(SubscribeRequestSchema, { user: "w", room: "ws" }),
  );
  ws.send(encodeEnvelope(0, sub));
  ws.send(encodeEnvelope(0x80, new Uint8Array(0)));
  await firstFrame;
  const text = await (await stack.fetch(stack.url + "/metrics")).text();
  assert.equal(sample(text, "chat_edge_websockets"), 1);
  assert.equal(sample(text, 'chat_edge_active_calls{protocol="websocket"}'), 1);
  const closed = new Promise((resolve) => ws.onclose = resolve);
  ws.close();
  await closed;
  let after = "";
  for (let i = 0; i < 100; i++) {
    after = await (await stack.fetch(stack.url + "/metrics")).text();
    if (sample(after, "chat_edge_websockets") === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(sample(after, "chat_edge_websockets"), 0);
  assert.equal(
    sample(
      after,
      'chat_edge_calls_total{protocol="websocket",method="chat.ChatService/SubscribeMessages",code="CANCELLED"}',
    ),
    1,
  );
});

Deno.test("edge /metrics: a token makes it answer 401 without the right bearer (the scheme in any case)", async () => {
  await using stack = await startCoreEdge({ metricsToken: "s3cret" });
  for (const auth of [undefined, "Bearer wrong", "Bearer s3cret2", "s3cret"]) {
    const res = await stack.fetch(stack.url + "/metrics", {
      headers: auth ? { authorization: auth } : {},
    });
    await res.body?.cancel();
    assert.equal(res.status, 401, String(auth));
    assert.match(res.headers.get("www-authenticate")!, /^Bearer/);
  }
  for (const auth of ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret"]) {
    const ok = await stack.fetch(stack.url + "/metrics", {
      headers: { authorization: auth },
    });
    assert.equal(ok.status, 200, auth);
    assert.match(await ok.text(), /chat_edge_calls_total/);
  }
});

Deno.test("edge process: --log-format json writes one line per call, never per message", async () => {
  const core = await startCoreServer({ port: 0, aliveIntervalMs: 0 });
  const edge = spawnDeno(
    edgeArgs(`http://127.0.0.1:${core.port}`, "--log-format", "json"),
  );
  const lines: string[] = [];
  const nextLine = async () => {
    const line = await edge.nextLine();
    lines.push(line);
    return line;
  };
  const client = Deno.createHttpClient({});
  try {
    const listening = JSON.parse(await nextLine());
    assert.match(listening.msg, /^listening on http:\/\/127\.0\.0\.1:\d+/);
    const url = /http:\/\/127\.0\.0\.1:\d+/.exec(listening.msg)![0];
    const r = await readGrpcWeb(
      await fetch(url + SEND, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto" },
        body: sendBody(),
        client,
      } as RequestInit),
    );
    assert.equal(r.grpcStatus, 0);
    // A Connect call with a deadline: one streamed call, several messages.
    const metrics = await fetch(url + "/chat.ChatService/StreamMetrics", {
      method: "POST",
      headers: {
        "content-type": "application/connect+json",
        "connect-timeout-ms": "2500",
      },
      body: encodeEnvelope(
        0,
        new TextEncoder().encode(
          JSON.stringify({ instanceId: "t", intervalSeconds: 1 }),
        ),
      ),
      client,
    } as RequestInit);
    const body = new Uint8Array(await metrics.arrayBuffer());
    assert.ok(body.byteLength > 0);
    // /metrics works under the edge's Deploy permissions (net, env).
    const scrape = await fetch(url + "/metrics", { client } as RequestInit);
    assert.equal(scrape.status, 200);
    assert.match(
      await scrape.text(),
      /chat_edge_calls_total\{protocol="grpc-web",method="chat\.ChatService\/SendMessage",code="OK"\} 1/,
    );
    const unary = JSON.parse(await nextLine());
    assert.deepEqual(
      {
        msg: unary.msg,
        protocol: unary.protocol,
        method: unary.method,
        code: unary.code,
        status: unary.status,
        bytes_in: unary.bytes_in,
      },
      {
        msg: "call",
        protocol: "grpc-web",
        method: SEND,
        code: 0,
        status: "OK",
        bytes_in: sendBody().byteLength,
      },
    );
    assert.ok(unary.bytes_out > 0 && unary.duration_ms >= 0);
    assert.ok(!Number.isNaN(Date.parse(unary.time)));
    const stream = JSON.parse(await nextLine());
    assert.equal(stream.protocol, "connect");
    assert.equal(stream.method, "/chat.ChatService/StreamMetrics");
    assert.equal(stream.status, "DEADLINE_EXCEEDED");
    assert.equal(stream.bytes_out, body.byteLength);
    assert.ok(stream.duration_ms >= 2400, String(stream.duration_ms));
  } finally {
    client.close();
    lines.push(...await edge.stop());
    await core.shutdown(500);
  }
  // Nothing but lifecycle lines besides the two calls.
  assert.equal(
    lines.filter((l) => JSON.parse(l).msg === "call").length,
    2,
    lines.join("\n"),
  );
});

Deno.test("edge /metrics: no CORS headers, so no web page can read it; other paths keep theirs", async () => {
  await using stack = await startCoreEdge();
  const origin = { origin: "https://page.example" };
  const res = await stack.fetch(stack.url + "/metrics", { headers: origin });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.equal(res.headers.get("access-control-allow-origin"), null);
  const preflight = await stack.fetch(stack.url + "/metrics", {
    method: "OPTIONS",
    headers: { ...origin, "access-control-request-method": "GET" },
  });
  await preflight.body?.cancel();
  assert.equal(preflight.headers.get("access-control-allow-origin"), null);
  const health = await stack.fetch(stack.url + "/healthz", { headers: origin });
  await health.body?.cancel();
  assert.equal(health.headers.get("access-control-allow-origin"), "*");
});
