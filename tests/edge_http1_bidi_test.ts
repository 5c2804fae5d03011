/**
 * Bidi calls over HTTP/1.1 (edge/http1.ts): with a streamed body, refused
 * UNIMPLEMENTED with the reason, for Connect and gRPC-Web, before the call
 * reaches the core, so a client that leaves mid-body (Deno 2.9's HTTP/1.1
 * server would keep its socket for good) costs the edge nothing; with a
 * whole body of declared length (curl), served half duplex; served full
 * duplex over HTTP/2, and over HTTP/1.1 with `--http1-bidi allow`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import http2 from "node:http2";
import { ChatService, MessageSchema } from "../gen/chat_pb.ts";
import { encodeBase64, encodeEnvelope } from "../protocol/mod.ts";
import { startCoreEdge, waitUntil } from "./fixtures/edge_stack.ts";
import {
  concat,
  connectJsonBody,
  pushBody,
  readConnectStream,
  readGrpcWeb,
} from "./fixtures/edge_raw.ts";
import { roomContents } from "./support/core.ts";

const CHAT = "/chat.ChatService/Chat";
const REASON = /bidirectional streaming needs HTTP\/2.*HTTP\/1\.1.*\/ws/;
const enc = new TextEncoder();

function messageBytes(content: string): Uint8Array {
  return toBinary(
    MessageSchema,
    create(MessageSchema, { user: "u", room: "h1", content }),
  );
}

/** Each protocol's content type and the body of one Chat message. */
const PROTOCOLS = {
  Connect: {
    type: "application/connect+json",
    body: (content: string) =>
      connectJsonBody([{ user: "u", room: "h1", content }]),
  },
  "gRPC-Web": {
    type: "application/grpc-web+proto",
    body: (content: string) => encodeEnvelope(0, messageBytes(content)),
  },
  "gRPC-Web text": {
    type: "application/grpc-web-text+proto",
    body: (content: string) =>
      enc.encode(encodeBase64(encodeEnvelope(0, messageBytes(content)))),
  },
} as const;

/**
 * Sends Chat over `conn` as HTTP/1.1 with a chunked body of one chunk,
 * `body`, left open, and the `extraHeader` line if any; returns the first
 * bytes of the answer as text.
 */
async function chunkedChat(
  conn: Deno.Conn,
  type: string,
  body: Uint8Array,
  extraHeader?: string,
): Promise<string> {
  await conn.write(enc.encode(
    `POST ${CHAT} HTTP/1.1\r\n` +
      (extraHeader === undefined ? "" : `${extraHeader}\r\n`) +
      `content-type: ${type}\r\ntransfer-encoding: chunked\r\n\r\n` +
      `${body.byteLength.toString(16)}\r\n`,
  ));
  await conn.write(body);
  await conn.write(enc.encode("\r\n"));
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  return new TextDecoder().decode(buf.subarray(0, n ?? 0));
}

/** The status a refused call's client reads, by protocol. */
async function statusOf(
  protocol: keyof typeof PROTOCOLS,
  res: Response,
): Promise<{ code: string | number; message: string }> {
  if (protocol === "Connect") {
    // A streaming content type: HTTP 200 and the error in the end-stream
    // message (a Connect client reads no body from a non-200 stream).
    assert.equal(res.status, 200);
    const { messages, end } = await readConnectStream(res);
    assert.deepEqual(messages, []);
    return { code: end.error!.code, message: end.error!.message ?? "" };
  }
  const r = await readGrpcWeb(res);
  assert.equal(r.httpStatus, 200);
  assert.deepEqual(r.messages, []);
  return { code: r.grpcStatus, message: r.grpcMessage };
}

for (const [protocol, p] of Object.entries(PROTOCOLS)) {
  const name = protocol as keyof typeof PROTOCOLS;
  Deno.test(`edge ${protocol}: bidi Chat over HTTP/1.1 is refused UNIMPLEMENTED with the reason, and the core never sees it`, async () => {
    await using stack = await startCoreEdge();
    const src = pushBody();
    src.push(p.body("one"));
    // Deno's fetch speaks HTTP/1.1 to an http:// URL.
    const res = await stack.fetch(`${stack.url}${CHAT}`, {
      method: "POST",
      headers: { "content-type": p.type },
      body: src.body,
      duplex: "half",
    } as RequestInit);
    assert.equal(res.headers.get("connection"), "close");
    src.end();
    const status = await statusOf(name, res);
    assert.deepEqual(
      [status.code, REASON.test(status.message)],
      [name === "Connect" ? "unimplemented" : 12, true],
      status.message,
    );
    const { activeStreams, openCalls, rooms } = stack.core.snapshot();
    assert.deepEqual({ activeStreams, openCalls, rooms }, {
      activeStreams: 0,
      openCalls: 0,
      rooms: 0,
    });
  });
}

Deno.test("edge: bidi calls over HTTP/1.1 whose clients leave mid-body (streamed, or half of a declared length) leave no socket open at the edge", async () => {
  // Deno 2.9's HTTP/1.1 server keeps the socket of a streamed answer whose
  // client left before ending its request body (edge/http1.ts); served,
  // each of these calls would add a descriptor that never goes.
  await using stack = await startCoreEdge();
  const port = Number(new URL(stack.url).port);
  const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
  const calls = 20;
  const before = fds();
  const answers = new Set<string>();
  for (let i = 0; i < calls; i++) {
    const [protocol, p] = Object.entries(PROTOCOLS)[i % 3];
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const body = p.body(`line ${i}`);
    if (i % 2 === 0) {
      // Streamed (chunked): refused; the client reads the answer, then
      // leaves with its request body still open.
      const head = await chunkedChat(conn, p.type, body, "host: 127.0.0.1");
      answers.add(
        `${protocol}: ${head.split("\r\n")[0]} ${
          /unimplemented|grpc-status: 12/.test(head) ? "refused" : "served"
        }`,
      );
    } else {
      // A declared length and half the body: read whole first, nothing
      // answered yet, and the client leaves.
      await conn.write(enc.encode(
        `POST ${CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
          `content-type: ${p.type}\r\ncontent-length: ${body.byteLength}\r\n\r\n`,
      ));
      await conn.write(body.subarray(0, body.byteLength >> 1));
      await new Promise((r) => setTimeout(r, 20));
    }
    conn.close();
  }
  assert.deepEqual([...answers].sort(), [
    "Connect: HTTP/1.1 200 OK refused",
    "gRPC-Web text: HTTP/1.1 200 OK refused",
    "gRPC-Web: HTTP/1.1 200 OK refused",
  ]);
  // The edge's sockets of those calls close as their clients do.
  await waitUntil(() => fds() <= before + 2, 3000, "the sockets to close");
});

for (
  const [protocol, transport] of Object.entries({
    Connect: createConnectTransport,
    "gRPC-Web": createGrpcWebTransport,
  })
) {
  Deno.test(`edge ${protocol}: bidi Chat over HTTP/2 (h2c) runs full duplex, each echo before the next line is sent`, async () => {
    await using stack = await startCoreEdge();
    // Closed before the edge stops: Deno's node:http2 client can abort the
    // process on the GOAWAY of a server that stops under it.
    const sessions = new Http2SessionManager(stack.url);
    using _ = { [Symbol.dispose]: () => sessions.abort() };
    const client = createClient(
      ChatService,
      transport({
        baseUrl: stack.url,
        httpVersion: "2",
        useBinaryFormat: true,
        sessionManager: sessions,
      }),
    );
    // The next line goes only once the echo of the one before came back:
    // over a half-duplex path this would wait for ever.
    let echoed!: () => void;
    const lines = ["one", "two", "three"];
    async function* send() {
      for (const content of lines) {
        const seen = new Promise<void>((r) => echoed = r);
        yield { user: "u", room: "h2", content };
        await seen;
      }
    }
    const got: string[] = [];
    for await (const m of client.chat(send(), { timeoutMs: 10_000 })) {
      if (m.content.startsWith("Echo: ")) {
        got.push(m.content);
        echoed();
      }
    }
    assert.deepEqual(got, lines.map((l) => `Echo: ${l}`));
    await waitUntil(
      () => stack.core.snapshot().activeStreams === 0,
      3000,
      "the core's call to end",
    );
  });
}

Deno.test("edge: --http1-bidi allow serves bidi Chat over HTTP/1.1 full duplex", async () => {
  await using stack = await startCoreEdge({ http1Bidi: "allow" });
  const src = pushBody();
  src.push(PROTOCOLS["gRPC-Web"].body("first"));
  const res = await stack.fetch(`${stack.url}${CHAT}`, {
    method: "POST",
    headers: { "content-type": PROTOCOLS["gRPC-Web"].type },
    body: src.body,
    duplex: "half",
  } as RequestInit);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("grpc-status"), null);
  // The echo of the first line arrives while the body is still open.
  const reader = res.body!.getReader();
  const first = await reader.read();
  const frame = first.value!;
  const length = new DataView(frame.buffer, frame.byteOffset).getUint32(1);
  const echo = fromBinary(MessageSchema, frame.subarray(5, 5 + length));
  assert.equal(echo.content, "Echo: first");
  src.end();
  let tail = "";
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    tail += new TextDecoder().decode(r.value);
  }
  assert.match(tail, /grpc-status: ?0/);
});

Deno.test("edge: a Connect client over HTTP/1.1 reads the refusal as UNIMPLEMENTED", async () => {
  await using stack = await startCoreEdge();
  const client = createClient(
    ChatService,
    createConnectTransport({ baseUrl: stack.url, httpVersion: "1.1" }),
  );
  async function* one() {
    yield { user: "u", room: "h1", content: "hello" };
  }
  await assert.rejects(
    async () => {
      for await (const _ of client.chat(one())) { /* none */ }
    },
    (e) => {
      const err = ConnectError.from(e);
      assert.equal(err.code, Code.Unimplemented);
      assert.match(err.rawMessage, REASON);
      return true;
    },
  );
});

Deno.test("edge gRPC-Web: the real curl binary sends bidi Chat a whole body over HTTP/1.1 and gets each echo, then OK", async () => {
  await using stack = await startCoreEdge();
  const body = concat([
    PROTOCOLS["gRPC-Web"].body("from curl 1"),
    PROTOCOLS["gRPC-Web"].body("from curl 2"),
  ]);
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeFile(file, body);
    const out = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--http1.1",
        "-H",
        `content-type: ${PROTOCOLS["gRPC-Web"].type}`,
        "--data-binary",
        `@${file}`,
        `${stack.url}${CHAT}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const r = await readGrpcWeb(new Response(out.stdout));
    const echoes = r.messages.map((m) => fromBinary(MessageSchema, m).content)
      .filter((c) => c.startsWith("Echo: "));
    assert.deepEqual(echoes, ["Echo: from curl 1", "Echo: from curl 2"]);
    assert.equal(r.grpcStatus, 0, r.grpcMessage);
  } finally {
    await Deno.remove(file);
  }
  assert.deepEqual(await roomContents(stack.core.port, "h1"), [
    "from curl 1",
    "from curl 2",
  ]);
});

for (const protocol of ["Connect", "gRPC-Web text"] as const) {
  Deno.test(`edge ${protocol}: bidi Chat with a whole body over HTTP/1.1 (fetch of bytes) is served half duplex`, async () => {
    await using stack = await startCoreEdge();
    const p = PROTOCOLS[protocol];
    const res = await stack.fetch(`${stack.url}${CHAT}`, {
      method: "POST",
      headers: { "content-type": p.type },
      body: concat([p.body("w1"), p.body("w2")]),
    });
    assert.equal(res.status, 200);
    if (protocol === "Connect") {
      const { messages, end } = await readConnectStream(res);
      assert.deepEqual(
        messages.map((m) => (m as { content: string }).content).filter((c) =>
          c.startsWith("Echo: ")
        ),
        ["Echo: w1", "Echo: w2"],
      );
      assert.equal(end.error, undefined);
    } else {
      const r = await readGrpcWeb(res);
      assert.deepEqual(
        r.messages.map((m) => fromBinary(MessageSchema, m).content).filter((
          c,
        ) => c.startsWith("Echo: ")),
        ["Echo: w1", "Echo: w2"],
      );
      assert.equal(r.grpcStatus, 0, r.grpcMessage);
    }
  });
}

Deno.test("edge: a whole bidi body longer than --max-message-bytes (4/3 of it base64) is refused RESOURCE_EXHAUSTED with the bound; within it, served", async () => {
  await using stack = await startCoreEdge({ maxMessageBytes: 1024 });
  for (const protocol of ["Connect", "gRPC-Web", "gRPC-Web text"] as const) {
    const p = PROTOCOLS[protocol];
    const body = concat([p.body("x".repeat(600)), p.body("y".repeat(600))]);
    const res = await stack.fetch(`${stack.url}${CHAT}`, {
      method: "POST",
      headers: { "content-type": p.type },
      body,
    });
    const status = await statusOf(protocol, res);
    const bound = protocol === "gRPC-Web text" ? 1368 : 1024;
    assert.deepEqual(
      [
        status.code,
        status.message.includes(
          `at most ${bound} bytes; this one declares ${body.byteLength}`,
        ),
      ],
      [protocol === "Connect" ? "resource_exhausted" : 8, true],
      status.message,
    );
  }
  assert.equal(stack.core.snapshot().rooms, 0);
  // 1,276 bytes of base64 (957 of binary): within the text body's bound.
  const text = PROTOCOLS["gRPC-Web text"];
  const res = await stack.fetch(`${stack.url}${CHAT}`, {
    method: "POST",
    headers: { "content-type": text.type },
    body: text.body("z".repeat(940)),
  });
  const r = await readGrpcWeb(res);
  assert.equal(r.grpcStatus, 0, r.grpcMessage);
  assert.deepEqual(await roomContents(stack.core.port, "h1"), [
    "z".repeat(940),
  ]);
});

Deno.test("edge: a chunked bidi body without a Host header is refused all the same", async () => {
  // HTTP/1.1 without Host: Deno takes it; the check is on the body.
  await using stack = await startCoreEdge();
  const port = Number(new URL(stack.url).port);
  const body = PROTOCOLS["gRPC-Web"].body("no host");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = await chunkedChat(conn, PROTOCOLS["gRPC-Web"].type, body);
    assert.match(head, /^HTTP\/1\.1 200 OK/);
    assert.match(head, /grpc-status: 12/);
  } finally {
    conn.close();
  }
  assert.equal(stack.core.snapshot().rooms, 0);
});

Deno.test("edge: a bidi call over HTTP/2 that sends a Host header (as RFC 9113 allows) is served", async () => {
  await using stack = await startCoreEdge();
  const session = http2.connect(stack.url);
  try {
    const req = session.request({
      ":method": "POST",
      ":path": CHAT,
      host: new URL(stack.url).host,
      "content-type": PROTOCOLS["gRPC-Web"].type,
    });
    const chunks: Uint8Array[] = [];
    const echoed = new Promise<void>((resolve) =>
      req.on("data", (c: Uint8Array) => {
        chunks.push(c);
        resolve();
      })
    );
    const ended = new Promise<void>((resolve) => req.on("end", resolve));
    req.write(PROTOCOLS["gRPC-Web"].body("over h2"));
    await echoed; // full duplex: the echo before the body ends
    req.end();
    await ended;
    const r = await readGrpcWeb(new Response(concat(chunks)));
    assert.deepEqual(
      r.messages.map((m) => fromBinary(MessageSchema, m).content),
      ["Echo: over h2"],
    );
    assert.equal(r.grpcStatus, 0, r.grpcMessage);
  } finally {
    session.close();
  }
});

Deno.test("edge Connect: GET of the bidi method is 405 over HTTP/1.1 as over HTTP/2", async () => {
  await using stack = await startCoreEdge();
  const res = await stack.fetch(
    `${stack.url}${CHAT}?connect=v1&encoding=json&message=%7B%7D`,
  );
  assert.equal(res.status, 405);
  assert.match(await res.text(), /HTTP GET is not allowed/);
});

for (
  const [protocol, deadline] of [
    ["Connect", "connect-timeout-ms: 300"],
    ["gRPC-Web", "grpc-timeout: 300m"],
  ] as const
) {
  Deno.test(`edge ${protocol}: a whole bidi body still coming in when the call's deadline passes ends the call DEADLINE_EXCEEDED then`, async () => {
    await using stack = await startCoreEdge();
    const port = Number(new URL(stack.url).port);
    const p = PROTOCOLS[protocol];
    const body = p.body("slow");
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const from = performance.now();
      await conn.write(enc.encode(
        `POST ${CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\n${deadline}\r\n` +
          `content-type: ${p.type}\r\ncontent-length: ${body.byteLength}\r\n\r\n`,
      ));
      // Half the body, and the rest never: the answer comes at the deadline.
      await conn.write(body.subarray(0, body.byteLength >> 1));
      const buf = new Uint8Array(4096);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buf),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("no answer 3 s after the deadline")),
            3300,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      const ms = performance.now() - from;
      const answer = new TextDecoder().decode(buf.subarray(0, n ?? 0));
      assert.match(
        answer,
        protocol === "Connect"
          ? /"code":"deadline_exceeded","message":"deadline exceeded while reading the request"/
          : /grpc-status: 4\r\ngrpc-message: deadline exceeded while reading the request\r\n/,
      );
      assert.ok(ms >= 250 && ms < 2000, `answered after ${ms} ms`);
    } finally {
      conn.close();
    }
    assert.equal(stack.core.snapshot().rooms, 0);
  });
}
