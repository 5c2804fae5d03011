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
import { ChatService, SubscribeRequestSchema } from "../gen/chat_pb.ts";
import {
  Code as ConnectCode,
  ConnectError,
  createClient,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { encodeEnvelope, parseConnectEndStream } from "../protocol/mod.ts";
import { encodeFrame, FLAG_DATA, FLAG_END } from "../protocol/ws_bridge.ts";
import type { Upstream } from "../edge/upstream/types.ts";
import {
  type EdgeStack,
  startCoreEdge,
  startFixtureEdge,
  waitUntil,
} from "./fixtures/edge_stack.ts";
import { wsClientFrame } from "./fixtures/edge_raw.ts";

const SUBSCRIBE = "/chat.ChatService/SubscribeMessages";
const SEND = "/chat.ChatService/SendMessage";
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

const subscribeJson = () =>
  encodeEnvelope(0, encoder.encode(JSON.stringify({ room: "r", user: "u" })));

const subscribeProto = () =>
  encodeEnvelope(
    0,
    toBinary(
      SubscribeRequestSchema,
      create(SubscribeRequestSchema, { room: "r", user: "u" }),
    ),
  );

const STREAMS = [
  {
    protocol: "connect",
    type: "application/connect+json",
    body: subscribeJson,
  },
  {
    protocol: "grpc-web",
    type: "application/grpc-web+proto",
    body: subscribeProto,
  },
];

for (const { protocol, type, body } of STREAMS) {
  Deno.test(`edge records: a ${protocol} server stream whose curl is killed ends once, CANCELLED`, async () => {
    const lines = new Lines();
    await using stack = await startCoreEdge({ logFormat: "text" }, {}, {
      writeLine: lines.write,
    });
    const curl = new Deno.Command("curl", {
      args: [
        "-s",
        "-N",
        "-X",
        "POST",
        stack.url + SUBSCRIBE,
        "-H",
        `content-type: ${type}`,
        "--data-binary",
        "@-",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const stdin = curl.stdin.getWriter();
    await stdin.write(body());
    await stdin.close();
    const out = curl.stdout.getReader();
    try {
      // The welcome message: the call is under way.
      assert.equal((await out.read()).done, false);
      assert.equal(stack.core.snapshot().subscribers, 1);
      curl.kill("SIGTERM");
    } finally {
      await out.cancel();
      await curl.status;
    }
    await waitUntil(
      () => stack.core.snapshot().subscribers === 0,
      3000,
      "the core's subscriber to go",
    );
    const text = await settled(stack, protocol);
    const method = SUBSCRIBE.slice(1);
    assert.equal(sample(text, calls(protocol, method, "CANCELLED")), 1, text);
    assert.deepEqual(lines.calls(), [`${protocol} ${SUBSCRIBE} CANCELLED`]);
  });
}

Deno.test("edge records: a Connect stream whose fetch body is cancelled ends once, CANCELLED", async () => {
  const lines = new Lines();
  await using stack = await startCoreEdge({ logFormat: "text" }, {}, {
    writeLine: lines.write,
  });
  const res = await stack.fetch(stack.url + SUBSCRIBE, {
    method: "POST",
    headers: { "content-type": "application/connect+json" },
    body: subscribeJson(),
  });
  const reader = res.body!.getReader();
  assert.equal((await reader.read()).done, false);
  await reader.cancel();
  const text = await settled(stack, "connect");
  assert.equal(
    sample(text, calls("connect", SUBSCRIBE.slice(1), "CANCELLED")),
    1,
    text,
  );
  assert.deepEqual(lines.calls(), [`connect ${SUBSCRIBE} CANCELLED`]);
});

Deno.test("edge records: a Connect unary call the client aborts ends once, CANCELLED (pass-through and router)", async () => {
  const lines = new Lines();
  await using stack = await startFixtureEdge({ logFormat: "text" }, {
    writeLine: lines.write,
  });
  // A deadline sends the call through connect-es's router instead.
  const forms: Record<string, string>[] = [{}, {
    "connect-timeout-ms": "60000",
  }];
  for (const extra of forms) {
    const ctl = new AbortController();
    const answer = stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: { "content-type": "application/json", ...extra },
      body: JSON.stringify({ user: "u", room: "r", content: "hang" }),
      signal: ctl.signal,
    });
    // The fixture core never answers "hang"; let the call reach it.
    await new Promise((r) => setTimeout(r, 300));
    ctl.abort();
    await answer.then((r) => r.body?.cancel(), () => {});
    await settled(stack, "connect");
  }
  const text = await scrape(stack);
  assert.equal(
    sample(text, calls("connect", SEND.slice(1), "CANCELLED")),
    2,
    text,
  );
  assert.deepEqual(lines.calls(), [
    `connect ${SEND} CANCELLED`,
    `connect ${SEND} CANCELLED`,
  ]);
});

Deno.test("edge records: Connect refusals are recorded with the code in the error the client reads", async () => {
  const lines = new Lines();
  await using stack = await startCoreEdge({ logFormat: "text" }, {}, {
    writeLine: lines.write,
  });
  const post = (path: string, type: string, body: BodyInit, extra = {}) =>
    stack.fetch(stack.url + path, {
      method: "POST",
      headers: { "content-type": type, ...extra },
      body,
    });
  const cases: [string, () => Promise<Response>, number, string][] = [
    // Malformed JSON, on the pass-through path and through the router.
    [
      "bad JSON",
      () => post(SEND, "application/json", "{not json"),
      400,
      "invalid_argument",
    ],
    [
      "bad JSON, deadline",
      () =>
        post(SEND, "application/json", "{not json", {
          "connect-timeout-ms": "5000",
        }),
      400,
      "invalid_argument",
    ],
    ["GET", () => stack.fetch(stack.url + SEND), 405, "unimplemented"],
    // A streaming content type: the error in an end-stream message of a
    // 200 answer, since a streaming client reads no body from another.
    [
      "stream type, unary method",
      () => post(SEND, "application/connect+json", subscribeJson()),
      200,
      "unimplemented",
    ],
    [
      "unknown method",
      () => post("/chat.ChatService/Nope", "application/json", "{}"),
      404,
      "unimplemented",
    ],
    [
      "unknown method, streaming type",
      () =>
        post(
          "/chat.ChatService/Nope",
          "application/connect+json",
          subscribeJson(),
        ),
      200,
      "unimplemented",
    ],
  ];
  for (const [what, call, status, code] of cases) {
    const res = await call();
    assert.equal(res.status, status, what);
    const error = status === 200
      ? parseConnectEndStream(
        new Uint8Array(await res.arrayBuffer()).subarray(5),
      )
        .error
      : await res.json();
    assert.equal(error?.code, code, what);
  }
  // A malformed message in a stream: the end-stream message says so.
  const stream = await post(
    SUBSCRIBE,
    "application/connect+json",
    encodeEnvelope(0, encoder.encode("{not json")),
  );
  assert.match(await stream.text(), /"code":"invalid_argument"/);

  const text = await settled(stack, "connect");
  const send = SEND.slice(1);
  assert.equal(
    sample(text, calls("connect", send, "INVALID_ARGUMENT")),
    2,
    text,
  );
  assert.equal(sample(text, calls("connect", send, "UNIMPLEMENTED")), 2, text);
  assert.equal(
    sample(text, calls("connect", "unknown", "UNIMPLEMENTED")),
    2,
    text,
  );
  assert.equal(
    sample(text, calls("connect", SUBSCRIBE.slice(1), "INVALID_ARGUMENT")),
    1,
    text,
  );
  assert.doesNotMatch(text, /code="(INTERNAL|UNKNOWN)"/);
  assert.deepEqual(lines.calls(), [
    `connect ${SEND} INVALID_ARGUMENT`,
    `connect ${SEND} INVALID_ARGUMENT`,
    `connect ${SEND} UNIMPLEMENTED`,
    `connect ${SEND} UNIMPLEMENTED`,
    "connect /chat.ChatService/Nope UNIMPLEMENTED",
    "connect /chat.ChatService/Nope UNIMPLEMENTED",
    `connect ${SUBSCRIBE} INVALID_ARGUMENT`,
  ]);
});

Deno.test("edge records: calls refused for --max-requests-per-ip are recorded RESOURCE_EXHAUSTED", async () => {
  const lines = new Lines();
  await using stack = await startCoreEdge(
    { logFormat: "text", maxRequestsPerIp: 1 },
    {},
    { writeLine: lines.write },
  );
  // One stream holds the address's one place.
  const held = await stack.fetch(stack.url + SUBSCRIBE, {
    method: "POST",
    headers: { "content-type": "application/connect+json" },
    body: subscribeJson(),
  });
  const reader = held.body!.getReader();
  try {
    assert.equal((await reader.read()).done, false);
    const connect = await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: "u", room: "r", content: "c" }),
    });
    assert.equal(connect.status, 429);
    assert.equal((await connect.json()).code, "resource_exhausted");
    const grpcWeb = await stack.fetch(stack.url + SEND, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: new Uint8Array(5),
    });
    await grpcWeb.body?.cancel();
    assert.equal(grpcWeb.headers.get("grpc-status"), "8");
    // Not a call: no record.
    const page = await stack.fetch(stack.url + "/healthz");
    await page.body?.cancel();
    assert.equal(page.status, 429);
  } finally {
    await reader.cancel();
  }
  const text = await settled(stack, "connect");
  const send = SEND.slice(1);
  assert.equal(
    sample(text, calls("connect", send, "RESOURCE_EXHAUSTED")),
    1,
    text,
  );
  assert.equal(
    sample(text, calls("grpc-web", send, "RESOURCE_EXHAUSTED")),
    1,
    text,
  );
  assert.equal(sample(text, 'chat_edge_active_calls{protocol="grpc-web"}'), 0);
  assert.deepEqual(lines.calls(), [
    `connect ${SEND} RESOURCE_EXHAUSTED`,
    `grpc-web ${SEND} RESOURCE_EXHAUSTED`,
    `connect ${SUBSCRIBE} CANCELLED`,
  ]);
});

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
    await conn.write(wsClientFrame(
      0x1,
      encoder.encode(JSON.stringify({ path: SUBSCRIBE })),
    ));
    await conn.write(
      wsClientFrame(0x2, encodeFrame(FLAG_DATA, subscribeProto().subarray(5))),
    );
    await conn.write(
      wsClientFrame(0x2, encodeFrame(FLAG_END, new Uint8Array(0))),
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

/**
 * An edge before a core, with an upstream that throws instead of answering
 * with a status: a bug in the edge, which its client is told as INTERNAL.
 */
function brokenEdge(lines: Lines) {
  const broken = (upstream: Upstream): Upstream => ({
    ...upstream,
    call: () => {
      throw new Error("broken upstream");
    },
    close: () => upstream.close(),
    healthy: () => upstream.healthy(),
  });
  return startCoreEdge({ logFormat: "text" }, {}, {
    writeLine: lines.write,
    wrapUpstream: broken,
  });
}

Deno.test("edge records: a WebSocket bridge call the edge itself fails ends INTERNAL", async () => {
  const lines = new Lines();
  await using stack = await brokenEdge(lines);
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

/** What a connect-es client reads from `call`: "OK" or the error's code. */
async function clientReads(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "OK";
  } catch (err) {
    return ConnectCode[ConnectError.from(err).code];
  }
}

/** connect-es's code name as the records write it (`ResourceExhausted`). */
const recorded = (name: string) =>
  name === "OK" ? name : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();

Deno.test("edge records: a Connect call the edge itself fails is told INTERNAL in its protocol's form (unary binary and JSON, stream) and recorded INTERNAL", async () => {
  const lines = new Lines();
  await using stack = await brokenEdge(lines);
  const read: string[] = [];
  const error = console.error;
  console.error = () => {}; // the edge's report of the bug
  try {
    for (const useBinaryFormat of [true, false]) {
      const client = createClient(
        ChatService,
        createConnectTransport({
          baseUrl: stack.url,
          fetch: stack.fetch,
          useBinaryFormat,
        }),
      );
      read.push(
        await clientReads(() =>
          client.sendMessage({ user: "u", room: "r", content: "hi" })
        ),
      );
      read.push(
        await clientReads(async () => {
          for await (const _ of client.subscribeMessages({ room: "r" })) {
            break;
          }
        }),
      );
    }
  } finally {
    console.error = error;
  }
  await settled(stack, "connect");
  assert.deepEqual(read, ["Internal", "Internal", "Internal", "Internal"]);
  assert.deepEqual(
    lines.calls(),
    [SEND, SUBSCRIBE, SEND, SUBSCRIBE].map((p) => `connect ${p} INTERNAL`),
  );
});

Deno.test("edge records: Connect calls refused for --max-requests-per-ip: a connect-es client reads RESOURCE_EXHAUSTED for a stream and a unary call, as recorded", async () => {
  const lines = new Lines();
  await using stack = await startCoreEdge(
    { logFormat: "text", maxRequestsPerIp: 1 },
    {},
    { writeLine: lines.write },
  );
  const client = createClient(
    ChatService,
    createConnectTransport({ baseUrl: stack.url, fetch: stack.fetch }),
  );
  const held = new AbortController();
  const stream = client.subscribeMessages({ room: "r", user: "u" }, {
    signal: held.signal,
  })[Symbol.asyncIterator]();
  await stream.next(); // the welcome: the address's one place is taken
  const read = [
    await clientReads(async () => {
      for await (const _ of client.subscribeMessages({ room: "r" })) break;
    }),
    await clientReads(() =>
      client.sendMessage({ user: "u", room: "r", content: "c" })
    ),
  ];
  held.abort();
  await stream.return?.().catch(() => {});
  await settled(stack, "connect");
  assert.deepEqual(read, ["ResourceExhausted", "ResourceExhausted"]);
  assert.deepEqual(lines.calls(), [
    `connect ${SUBSCRIBE} ${recorded(read[0])}`,
    `connect ${SEND} ${recorded(read[1])}`,
    `connect ${SUBSCRIBE} CANCELLED`,
  ]);
});
