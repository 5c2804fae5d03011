/**
 * The edge's gRPC-Web fast paths answer exactly as the general ones: the
 * Hono bypass (same status, headers and body as through the Hono route) and
 * the one-piece request body (same messages and errors as the streamed read).
 */
import assert from "node:assert/strict";
import { createEdgeApp } from "../edge/app.ts";
import { DEFAULT_EDGE_CONFIG, type EdgeConfig } from "../edge/config.ts";
import {
  BUFFERED_BODY_MAX_BYTES,
  readGrpcWebBody,
  readGrpcWebRequest,
} from "../edge/grpc_web_body.ts";
import { StatusError } from "../edge/upstream/status.ts";
import type {
  CallOptions,
  Upstream,
  UpstreamStatus,
} from "../edge/upstream/types.ts";
import { encodeBase64, encodeEnvelope } from "../protocol/mod.ts";

/** An upstream that echoes every request message twice, then OK + trailers. */
function echoUpstream(seen: CallOptions[] = []): Upstream {
  return {
    call(_path, requests, options) {
      seen.push(options);
      const got: Uint8Array[] = [];
      let done!: () => void;
      const finished = new Promise<void>((r) => done = r);
      (async () => {
        for await (const m of requests) got.push(m, m);
        done();
      })().catch(() => done());
      const status = finished.then((): UpstreamStatus => ({
        code: 0,
        message: "",
        trailers: { "x-trailer": "t" },
      }));
      return {
        headers: Promise.resolve({ "custom-header-1": "h" }),
        messages: {
          async *[Symbol.asyncIterator]() {
            await finished;
            yield* got;
          },
        },
        status,
      };
    },
    healthy: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  };
}

function config(allowedOrigins: string[]): Readonly<EdgeConfig> {
  return { ...DEFAULT_EDGE_CONFIG, allowedOrigins, logFormat: "off" };
}

async function snapshot(res: Response) {
  return {
    status: res.status,
    headers: [...res.headers].sort(),
    body: new Uint8Array(await res.arrayBuffer()),
  };
}

const body = encodeEnvelope(0, new TextEncoder().encode("hello"));

for (const origins of [["*"], ["https://a.example"]]) {
  for (const origin of [null, "https://a.example", "https://b.example"]) {
    Deno.test(`createEdgeApp() gRPC-Web bypass answers as the Hono route (origins ${origins}, origin ${origin})`, async () => {
      const app = createEdgeApp({
        upstream: echoUpstream(),
        config: config(origins),
      });
      const request = (path: string) =>
        new Request(`http://edge.test${path}`, {
          method: "POST",
          headers: {
            "content-type": "application/grpc-web+proto",
            "content-length": String(body.length),
            ...(origin ? { origin } : {}),
          },
          body,
        });
      // An escaped path skips the bypass and goes through Hono's route.
      const fast = await snapshot(await app.fetch(request("/svc/A")));
      const routed = await snapshot(await app.fetch(request("/svc/%41")));
      assert.deepEqual(fast, routed);
      assert.equal(fast.status, 200);
    });
  }
}

Deno.test("createEdgeApp() gRPC-Web bypass forwards only allow-listed metadata", async () => {
  const seen: CallOptions[] = [];
  const app = createEdgeApp({
    upstream: echoUpstream(seen),
    config: config(["*"]),
  });
  const res = await app.fetch(
    new Request("http://edge.test/svc/m", {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web-text",
        "custom-header-1": "v",
        "grpc-timeout": "5S",
        cookie: "c",
      },
      body: encodeBase64(body),
    }),
  );
  await res.arrayBuffer();
  assert.deepEqual(seen[0].metadata, { "custom-header-1": "v" });
  assert.equal(seen[0].timeoutMs, 5000);
});

async function messagesOf(it: AsyncIterable<Uint8Array>) {
  const out: string[] = [];
  try {
    for await (const m of it) out.push(new TextDecoder().decode(m));
  } catch (e) {
    assert.ok(e instanceof StatusError);
    out.push(`error ${e.code}`);
  }
  return out;
}

const frames = (...texts: string[]) => {
  const parts = texts.map((t) =>
    encodeEnvelope(0, new TextEncoder().encode(t))
  );
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

const cases: [string, Uint8Array | string, boolean][] = [
  ["two messages", frames("a", "bc"), false],
  ["empty body", new Uint8Array(0), false],
  ["truncated frame", frames("abc").subarray(0, 6), false],
  ["bad flag", new Uint8Array([1, 0, 0, 0, 0]), false],
  ["oversize", frames("x".repeat(100)), false],
  [
    "text, padded frames",
    encodeBase64(frames("a")) + encodeBase64(frames("b")),
    true,
  ],
  ["text, bad base64", "!!!!", true],
];

for (const [name, bytes, text] of cases) {
  Deno.test(`readGrpcWebRequest() reads a small body as readGrpcWebBody() does: ${name}`, async () => {
    const options = { text, maxMessageBytes: 50 };
    const make = () =>
      new Request("http://edge.test/svc/m", {
        method: "POST",
        // Deno.serve requests carry the length a constructed one lacks.
        headers: { "content-length": String(bytes.length) },
        body: bytes as Uint8Array<ArrayBuffer> | string,
      });
    const req = make();
    assert.notEqual(req.headers.get("content-length"), null);
    const buffered = await messagesOf(readGrpcWebRequest(req, options));
    const streamed = await messagesOf(readGrpcWebBody(make().body, options));
    assert.deepEqual(buffered, streamed);
  });
}

Deno.test("readGrpcWebRequest() streams a body without a length or over the bound", async () => {
  const big = frames("y".repeat(BUFFERED_BODY_MAX_BYTES));
  const options = { text: false, maxMessageBytes: 1 << 20 };
  let pulled = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      pulled++;
      c.enqueue(frames("s"));
      if (pulled === 2) c.close();
    },
  });
  const streamed = new Request("http://edge.test/svc/m", {
    method: "POST",
    body: stream,
  });
  assert.deepEqual(await messagesOf(readGrpcWebRequest(streamed, options)), [
    "s",
    "s",
  ]);
  const large = new Request("http://edge.test/svc/m", {
    method: "POST",
    body: big as Uint8Array<ArrayBuffer>,
  });
  const got = await messagesOf(readGrpcWebRequest(large, options));
  assert.equal(got.length, 1);
  assert.equal(got[0].length, BUFFERED_BODY_MAX_BYTES);
});

/** An upstream answering every call with one empty message and OK. */
function emptyAnswerUpstream(code = 0): Upstream {
  return {
    call(_path, requests) {
      const status = (async (): Promise<UpstreamStatus> => {
        for await (const _ of requests) { /* read the request */ }
        return code === 0
          ? { code, message: "", trailers: { "x-trailer": "t" } }
          : { code, message: "no such room", trailers: {} };
      })();
      return {
        headers: Promise.resolve({ "custom-header-1": "h" }),
        messages: {
          async *[Symbol.asyncIterator]() {
            if ((await status).code === 0) yield new Uint8Array(0);
          },
        },
        status,
      };
    },
    healthy: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  };
}

for (const origins of [["*"], ["https://a.example"]]) {
  for (const origin of [null, "https://a.example", "https://b.example"]) {
    for (
      const [label, type, body, code, path] of [
        ["proto", "application/proto", new Uint8Array(0), 0, "SendMessage"],
        ["json", "application/json", "{}", 0, "SendMessage"],
        ["json error", "application/json", "{}", 5, "SendMessage"],
        ["bad json", "application/json", "{", 0, "SendMessage"],
        ["unknown method", "application/json", "{}", 0, "Nope"],
      ] as const
    ) {
      Deno.test(`createEdgeApp() Connect bypass answers as the Hono route: ${label} (origins ${origins}, origin ${origin})`, async () => {
        const answer = async (fastPaths: boolean) => {
          const app = createEdgeApp({
            upstream: emptyAnswerUpstream(code),
            config: config(origins),
            fastPaths,
          });
          const res = await app.fetch(
            new Request(`http://edge.test/chat.ChatService/${path}`, {
              method: "POST",
              headers: { "content-type": type, ...(origin ? { origin } : {}) },
              body,
            }),
          );
          const s = await snapshot(res);
          // The date header is the clock's.
          return { ...s, headers: s.headers.filter(([k]) => k !== "date") };
        };
        const fast = await answer(true);
        assert.deepEqual(fast, await answer(false));
        assert.equal(
          fast.status,
          label === "proto" || label === "json"
            ? 200
            : label === "json error"
            ? 404
            : label === "bad json"
            ? 400
            : 404,
        );
      });
    }
  }
}

Deno.test("createEdgeApp() gRPC-Web: time spent reading a small body counts against grpc-timeout", async () => {
  const seen: CallOptions[] = [];
  const app = createEdgeApp({
    upstream: echoUpstream(seen),
    config: config(["*"]),
  });
  const send = async (timeout: string, delayMs: number) => {
    const slow = new ReadableStream<Uint8Array>({
      async start(controller) {
        await new Promise((r) => setTimeout(r, delayMs));
        controller.enqueue(body);
        controller.close();
      },
    });
    const res = await app.fetch(
      new Request("http://edge.test/chat.ChatService/SendMessage", {
        method: "POST",
        headers: {
          "content-type": "application/grpc-web+proto",
          "content-length": `${body.length}`,
          "grpc-timeout": timeout,
        },
        body: slow,
      }),
    );
    await res.arrayBuffer();
    return res.headers.get("grpc-status");
  };
  assert.equal(await send("50m", 200), "4");
  assert.equal(seen.length, 0, "an expired call never reaches the core");
  assert.equal(await send("10S", 50), null, "trailers in the body: OK");
  assert.equal(seen.length, 1);
  const left = seen[0].timeoutMs!;
  assert.ok(left < 10_000 - 40 && left > 5_000, `deadline left: ${left}`);
});
