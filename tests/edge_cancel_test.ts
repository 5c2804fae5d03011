/**
 * A browser that leaves a server stream through the edge ends the core's
 * call at once, for Connect and gRPC-Web over HTTP/1.1: on a raw socket the
 * test closes (the disconnect as the edge sees it), and through the stack's
 * fetch aborted by connect-web after a garbage collection. Deno's fetch
 * alone loses such an abort (the caller's signal reaches the response body
 * only through the internal Request's signal, apparently held weakly), keeps
 * the connection open and the edge never hears of it; the stack's fetch
 * (tests/fixtures/edge_stack.ts) drops the connection as a browser does.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";
import { ChatService, SubscribeRequestSchema } from "../gen/chat_pb.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import {
  type CoreEdgeStack,
  startCoreEdge,
  waitUntil,
} from "./fixtures/edge_stack.ts";

const PATH = "/chat.ChatService/SubscribeMessages";
const CONTENT_TYPES = {
  Connect: "application/connect+proto",
  "gRPC-Web": "application/grpc-web+proto",
};

/** Milliseconds the core may take to drop a subscriber after a disconnect. */
const PROMPT_MS = 1000;

/**
 * Allocates enough short-lived objects to run the garbage collector, which
 * is what let Deno's fetch lose a caller's abort (see the fixture).
 */
function churn(): number {
  let n = 0;
  for (let round = 0; round < 4; round++) {
    const kept: unknown[] = [];
    for (let i = 0; i < 1_000_000; i++) kept.push({ i });
    n += kept.length;
  }
  return n;
}

/** Reads from `conn` until `bytes` bytes arrived in all; returns them as text. */
async function readAtLeast(conn: Deno.Conn, bytes: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(16 * 1024);
  while (total < bytes) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`connection closed after ${total} bytes`);
    chunks.push(buf.slice(0, n));
    total += n;
  }
  return chunks.map((c) => new TextDecoder().decode(c)).join("");
}

/**
 * Subscribes `user` to `room` over a raw HTTP/1.1 connection to the edge,
 * reads the welcome, closes the connection mid-stream and waits for the
 * core's subscriber to go.
 */
async function subscribeThenHangUp(
  stack: CoreEdgeStack,
  contentType: string,
  room: string,
  user: string,
): Promise<void> {
  const { port } = new URL(stack.url);
  const body = encodeEnvelope(
    0,
    toBinary(
      SubscribeRequestSchema,
      create(SubscribeRequestSchema, { room, user }),
    ),
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: +port });
  try {
    const head = `POST ${PATH} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n` +
      `content-type: ${contentType}\r\n` +
      `content-length: ${body.byteLength}\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head));
    await conn.write(body);
    // The status line, headers and the first message (the welcome).
    const got = await readAtLeast(conn, 64);
    assert.match(got, /^HTTP\/1\.1 200/);
    assert.match(got, new RegExp(`${room}, ${user}`));
    assert.equal(stack.core.snapshot().subscribers, 1);
  } finally {
    conn.close();
  }
  await waitUntil(
    () => stack.core.snapshot().subscribers === 0,
    PROMPT_MS,
    "the core's subscriber to go",
  );
}

for (const [name, contentType] of Object.entries(CONTENT_TYPES)) {
  Deno.test(`edge ${name}: a client that closes its HTTP/1.1 connection mid-stream ends the core's subscription`, async () => {
    await using stack = await startCoreEdge();
    await subscribeThenHangUp(stack, contentType, "lobby", "watcher");
  });

  Deno.test(`edge ${name}: connect-web aborting a server stream ends the core's subscription, every time`, async () => {
    await using stack = await startCoreEdge();
    const transport = name === "Connect"
      ? createConnectTransport({ baseUrl: stack.url, fetch: stack.fetch })
      : createGrpcWebTransport({ baseUrl: stack.url, fetch: stack.fetch });
    const client = createClient(ChatService, transport);
    // Several rounds, with garbage collected between the call's start and
    // its abort: Deno's fetch alone then kept the connection open.
    for (let round = 0; round < 5; round++) {
      const ctl = new AbortController();
      const it = client.subscribeMessages({ room: "lobby", user: "watcher" }, {
        signal: ctl.signal,
      })[Symbol.asyncIterator]();
      assert.match((await it.next()).value!.content, /lobby, watcher/);
      assert.equal(stack.core.snapshot().subscribers, 1);
      churn();
      ctl.abort();
      await it.next().catch(() => {});
      await waitUntil(
        () => stack.core.snapshot().subscribers === 0,
        PROMPT_MS,
        `round ${round}: the core's subscriber to go`,
      );
    }
  });
}

/**
 * The request as the edge got it from Deno.serve, with a signal of its own
 * that never fires: what Deno 2.9 hands over in the cases where it cancels
 * the response body of a client that went away without ever aborting
 * `request.signal` (bench/soak.ts saw it for ~1 in 7 Connect streams a
 * connect-node client abandoned; docs/perf-log.md, "stop 29").
 */
function withDeafSignal(request: Request): Request {
  return new Request(request.url, {
    method: request.method,
    headers: request.headers,
    body: request.body,
    duplex: "half",
  } as RequestInit);
}

for (const [name, contentType] of Object.entries(CONTENT_TYPES)) {
  Deno.test(`edge ${name}: a response body cancelled without request.signal ends the core's subscription in a quiet room`, async () => {
    await using stack = await startCoreEdge({}, {}, {
      wrapRequest: withDeafSignal,
    });
    // Deno cancels the response body as the connection closes; the
    // request's signal stays quiet, and so does the room: nothing else
    // would wake the call.
    await subscribeThenHangUp(stack, contentType, "quiet", "gone");
  });
}

Deno.test("edge Connect and gRPC-Web: a bidi call whose client left with its request body open is let go (no call kept by a read that never settles)", async () => {
  // A child with --expose-gc counts the upstream calls still reachable
  // after full collections (tests/fixtures/abandoned_body_child.ts).
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./fixtures/abandoned_body_child.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, stderr);
  const alive = JSON.parse(new TextDecoder().decode(out.stdout).trim());
  assert.deepEqual(alive, { rounds: 20, connect: 0, grpcweb: 0 });
});
