/**
 * The Connect protocol through the edge against the real core: connect-web's
 * Connect transport (JSON and binary), curl-style JSON, streaming bodies for
 * client streaming and bidi, deadlines and cancellation.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/chat_pb.ts";
import { startCoreEdge, waitUntil } from "./fixtures/edge_stack.ts";
import {
  connectJsonBody,
  pushBody,
  readConnectStream,
} from "./fixtures/edge_raw.ts";

const SEND = "/chat.ChatService/SendMessage";

function clientFor(
  stack: { url: string; fetch: typeof fetch },
  useBinaryFormat: boolean,
) {
  return createClient(
    ChatService,
    createConnectTransport({
      baseUrl: stack.url,
      fetch: stack.fetch,
      useBinaryFormat,
    }),
  );
}

for (const binary of [false, true]) {
  const kind = binary ? "binary" : "JSON";
  Deno.test(`edge Connect ${kind}: unary and server streaming via connect-web`, async () => {
    await using stack = await startCoreEdge();
    const client = clientFor(stack, binary);
    const ctl = new AbortController();
    const it = client.subscribeMessages({ room: "c", user: "ann" }, {
      signal: ctl.signal,
    })[Symbol.asyncIterator]();
    assert.equal((await it.next()).value!.content, "Welcome to room c, ann!");
    const sent = await client.sendMessage({
      user: "bob",
      room: "c",
      content: `via ${kind}`,
    });
    assert.match(sent.messageId, /^msg_\d+$/);
    assert.equal((await it.next()).value!.content, `via ${kind}`);
    ctl.abort();
    await assert.rejects(
      it.next(),
      (e) => ConnectError.from(e).code === Code.Canceled,
    );
    await waitUntil(
      () => stack.core.snapshot().subscribers === 0,
      3000,
      "unsubscribe",
    );
  });
}

Deno.test("edge Connect: StreamMetrics streams labelled metrics via connect-web", async () => {
  await using stack = await startCoreEdge();
  const ctl = new AbortController();
  for await (
    const m of clientFor(stack, true).streamMetrics({
      instanceId: "m1",
      intervalSeconds: 1,
    }, { signal: ctl.signal })
  ) {
    assert.ok(m.name.length > 0);
    assert.ok(m.timestamp);
    break;
  }
  ctl.abort();
});

Deno.test("edge Connect: curl-style JSON POST answers JSON, errors as Connect JSON errors", async () => {
  await using stack = await startCoreEdge();
  const ok = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "curl", room: "r", content: "hi" }),
  });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("content-type"), "application/json");
  const body = await ok.json();
  assert.match(body.messageId, /^msg_\d+$/);
  assert.match(body.timestamp, /^\d{4}-\d\d-\d\dT/);

  const bad = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "curl", room: "r" }),
  });
  assert.equal(bad.status, 400);
  const err = await bad.json();
  assert.equal(err.code, "invalid_argument");
  assert.ok(err.message.length > 0);

  // Whitespace-only content is no content, through the edge as directly.
  const blank = await stack.fetch(stack.url + SEND, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "curl", room: "r", content: " \n\t " }),
  });
  assert.equal(blank.status, 400);
  const blankErr = await blank.json();
  assert.equal(blankErr.code, "invalid_argument");
  assert.match(blankErr.message, /content is required/);
});

Deno.test("edge Connect: the real curl binary posts JSON and gets msg_N", async () => {
  await using stack = await startCoreEdge();
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "-X",
      "POST",
      "-H",
      "content-type: application/json",
      "-d",
      '{"user":"curl","room":"r","content":"from curl"}',
      stack.url + SEND,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.match(
    JSON.parse(new TextDecoder().decode(out.stdout)).messageId,
    /^msg_\d+$/,
  );
});

Deno.test("edge Connect: GET is refused with 405 for methods not marked side-effect free", async () => {
  await using stack = await startCoreEdge();
  const msg = encodeURIComponent(
    JSON.stringify({ user: "a", room: "b", content: "c" }),
  );
  const res = await stack.fetch(
    `${stack.url}${SEND}?connect=v1&encoding=json&message=${msg}`,
  );
  await res.body?.cancel();
  assert.equal(res.status, 405);
});

Deno.test("edge Connect: client streaming UploadMessages over a connect+json body", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(
    `${stack.url}/chat.ChatService/UploadMessages`,
    {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: connectJsonBody(
        [1, 2, 3].map((i) => ({ user: "u", room: "up", content: `m${i}` })),
      ),
    },
  );
  assert.equal(res.status, 200);
  const { messages, end } = await readConnectStream(res);
  assert.deepEqual(messages, [{ messageCount: 3, success: true }]);
  assert.equal(end.error, undefined);
});

Deno.test("edge Connect: bidi Chat over a streamed connect+json body (HTTP/1.1, --http1-bidi allow) echoes in turn", async () => {
  await using stack = await startCoreEdge({ http1Bidi: "allow" });
  const src = pushBody();
  src.push(connectJsonBody([{ user: "u", room: "bidi", content: "one" }]));
  const res = await stack.fetch(`${stack.url}/chat.ChatService/Chat`, {
    method: "POST",
    headers: { "content-type": "application/connect+json" },
    body: src.body,
    duplex: "half",
  } as RequestInit);
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.match(new TextDecoder().decode(first.value!), /"Echo: one"/);
  src.push(connectJsonBody([{ user: "u", room: "bidi", content: "two" }]));
  src.end();
  const rest: Uint8Array[] = [];
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    rest.push(r.value);
  }
  const text = new TextDecoder().decode(
    new Uint8Array(rest.flatMap((c) => [...c])),
  );
  assert.match(text, /"Echo: two"/);
  assert.match(text, /\{\}$/); // end-stream with no error
});

Deno.test("edge Connect: connect-timeout-ms ends a quiet stream with deadline_exceeded", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(
    `${stack.url}/chat.ChatService/SubscribeMessages`,
    {
      method: "POST",
      headers: {
        "content-type": "application/connect+json",
        "connect-timeout-ms": "300",
      },
      body: connectJsonBody([{ room: "quiet", user: "t" }]),
    },
  );
  const { messages, end } = await readConnectStream(res);
  assert.equal(messages.length, 1);
  assert.equal(end.error?.code, "deadline_exceeded");
  await waitUntil(
    () => stack.core.snapshot().subscribers === 0,
    3000,
    "unsubscribe",
  );
});

Deno.test("edge Connect: an unknown method is 404 unimplemented", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(`${stack.url}/chat.ChatService/Nope`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).code, "unimplemented");
});
