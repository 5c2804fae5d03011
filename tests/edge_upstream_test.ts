import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  MessageSchema,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  SubscribeRequestSchema,
  UploadResponseSchema,
} from "../gen/chat_pb.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { createHttp2Upstream } from "../edge/upstream/http2.ts";
import { createH2Upstream } from "../edge/upstream/h2_upstream.ts";
import { Code, StatusError } from "../edge/upstream/status.ts";
import type { Upstream } from "../edge/upstream/types.ts";
import { startFixtureCore } from "./fixtures/edge_core.ts";
import { drain } from "./fixtures/upstream_calls.ts";
import { testCertificate } from "./support/auth.ts";

const LIMIT = { maxMessageBytes: 1 << 20 };

/** The same cases run against every upstream implementation. */
const FACTORIES = [
  ["Http2Upstream", createHttp2Upstream],
  ["H2Upstream", createH2Upstream],
] as const;

async function* once(bytes: Uint8Array) {
  yield bytes;
}
const sendReq = (content: string) =>
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "ann", room: "r1", content }),
  );
const noAbort = () => new AbortController().signal;

async function withCore(
  makeUpstream: typeof createH2Upstream,
  fn: (
    up: Upstream,
    core: Awaited<ReturnType<typeof startFixtureCore>>,
  ) => Promise<void>,
) {
  const core = await startFixtureCore();
  const up = makeUpstream(`http://127.0.0.1:${core.port}`, LIMIT);
  try {
    await fn(up, core);
  } finally {
    await up.close();
    await core.close();
  }
}

/** A throw-away self-signed certificate for 127.0.0.1. */
async function selfSigned(): Promise<{ key: string; cert: string }> {
  const dir = await Deno.makeTempDir({ prefix: "edge_tls_" });
  try {
    const { key, cert } = await testCertificate(dir);
    return { key, cert };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * TLS termination in front of a plain h2c core: Deno.listenTls with ALPN h2,
 * piping bytes both ways (grpc-js's own TLS server misbehaves under Deno).
 */
function tlsFront(tls: { key: string; cert: string }, backendPort: number) {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    ...tls,
    alpnProtocols: ["h2"],
  });
  const conns = new Set<Deno.Conn>();
  const pipes: Promise<unknown>[] = [];
  const accepting = (async () => {
    for await (const front of listener) {
      const back = await Deno.connect({
        hostname: "127.0.0.1",
        port: backendPort,
      });
      conns.add(front).add(back);
      pipes.push(
        front.readable.pipeTo(back.writable).catch(() => {}),
        back.readable.pipeTo(front.writable).catch(() => {}),
      );
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      await accepting.catch(() => {});
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed by a finished pipe */ }
      }
      await Promise.all(pipes);
    },
  };
}

for (const [name, makeUpstream] of FACTORIES) {
  Deno.test(`${name}.call() forwards a unary call with metadata, headers and trailers`, () =>
    withCore(makeUpstream, async (up, core) => {
      const r = await drain(
        up.call(chatPaths.SendMessage, once(sendReq("hi")), {
          metadata: { "custom-header-1": "abc", authorization: "Bearer t" },
          signal: noAbort(),
        }),
      );
      assert.equal(r.status.code, Code.OK);
      assert.equal(r.messages.length, 1);
      assert.match(
        fromBinary(SendMessageResponseSchema, r.messages[0]).messageId,
        /^msg_\d+$/,
      );
      assert.equal(r.headers["custom-header-1"], "abc");
      assert.equal(r.status.trailers["x-trailer-echo"], "abc");
      assert.equal(core.lastMetadata().authorization, "Bearer t");
    }));

  Deno.test(`${name}.call() reports error statuses with decoded messages`, () =>
    withCore(makeUpstream, async (up) => {
      const failed = await drain(
        up.call(chatPaths.SendMessage, once(sendReq("trailers-only")), {
          metadata: { "custom-header-1": "z" },
          signal: noAbort(),
        }),
      );
      assert.equal(failed.status.code, Code.FAILED_PRECONDITION);
      assert.equal(failed.status.message, "precondition ✗ failed: 100%");
      assert.equal(failed.status.trailers["x-trailer-echo"], "z");
      const unknown = await drain(
        up.call("/chat.ChatService/Nope", once(new Uint8Array()), {
          metadata: {},
          signal: noAbort(),
        }),
      );
      assert.equal(unknown.status.code, Code.UNIMPLEMENTED);
      assert.deepEqual(unknown.messages, []);
    }));

  Deno.test(`${name}.call() streams client messages and reads the one reply`, () =>
    withCore(makeUpstream, async (up) => {
      async function* three() {
        for (let i = 0; i < 3; i++) {
          yield toBinary(
            MessageSchema,
            create(MessageSchema, { user: "u", room: "r", content: `m${i}` }),
          );
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      const r = await drain(
        up.call(chatPaths.UploadMessages, three(), {
          metadata: {},
          signal: noAbort(),
        }),
      );
      assert.equal(r.status.code, Code.OK);
      const reply = fromBinary(UploadResponseSchema, r.messages[0]);
      assert.equal(reply.messageCount, 3);
      assert.equal(reply.success, true);
    }));

  Deno.test(`${name}.call() takes the request messages as a list`, () =>
    withCore(makeUpstream, async (up) => {
      const messages = ["a", "b", "c"].map((content) =>
        toBinary(
          MessageSchema,
          create(MessageSchema, { user: "u", room: "r", content }),
        )
      );
      const r = await drain(
        up.call(chatPaths.UploadMessages, messages, {
          metadata: {},
          signal: noAbort(),
        }),
      );
      assert.equal(r.status.code, Code.OK);
      const reply = fromBinary(UploadResponseSchema, r.messages[0]);
      assert.equal(reply.messageCount, 3);
      const empty = await drain(
        up.call(chatPaths.UploadMessages, [], {
          metadata: {},
          signal: noAbort(),
        }),
      );
      assert.equal(empty.status.code, Code.OK);
      assert.equal(
        fromBinary(UploadResponseSchema, empty.messages[0]).messageCount,
        0,
      );
    }));

  Deno.test(`${name}.call() aborted by the signal removes the subscriber on the core`, () =>
    withCore(makeUpstream, async (up, core) => {
      const ctl = new AbortController();
      const call = up.call(
        chatPaths.SubscribeMessages,
        once(
          toBinary(
            SubscribeRequestSchema,
            create(SubscribeRequestSchema, { room: "r1", user: "bob" }),
          ),
        ),
        { metadata: {}, signal: ctl.signal },
      );
      const it = call.messages[Symbol.asyncIterator]();
      const welcome = fromBinary(MessageSchema, (await it.next()).value!);
      assert.equal(welcome.content, "Welcome to room r1, bob!");
      await core.waitForSubscribers(1);
      ctl.abort();
      await core.waitForSubscribers(0);
      assert.equal((await call.status).code, Code.CANCELLED);
      assert.equal((await it.next()).done, true);
    }));

  Deno.test(`${name}.call() enforces timeoutMs as DEADLINE_EXCEEDED`, () =>
    withCore(makeUpstream, async (up) => {
      const t0 = performance.now();
      const r = await drain(
        up.call(chatPaths.SendMessage, once(sendReq("hang")), {
          metadata: {},
          signal: noAbort(),
          timeoutMs: 150,
        }),
      );
      assert.equal(r.status.code, Code.DEADLINE_EXCEEDED);
      assert.ok(performance.now() - t0 < 2000);
    }));

  Deno.test(`${name} reports UNAVAILABLE and unhealthy when the core is down`, async () => {
    const core = await startFixtureCore();
    const port = core.port;
    await core.close();
    const up = makeUpstream(`http://127.0.0.1:${port}`, LIMIT);
    try {
      const r = await drain(
        up.call(chatPaths.SendMessage, once(sendReq("x")), {
          metadata: {},
          signal: noAbort(),
        }),
      );
      assert.equal(r.status.code, Code.UNAVAILABLE);
      assert.match(r.status.message, /ECONNREFUSED|unavailable/i);
      assert.equal(await up.healthy(), false);
    } finally {
      await up.close();
    }
  });

  Deno.test(`${name} reconnects after the core restarts`, async () => {
    const first = await startFixtureCore();
    const port = first.port;
    const up = makeUpstream(`http://127.0.0.1:${port}`, LIMIT);
    try {
      assert.equal(await up.healthy(), true);
      assert.equal(
        (await drain(
          up.call(chatPaths.SendMessage, once(sendReq("a")), {
            metadata: {},
            signal: noAbort(),
          }),
        )).status.code,
        Code.OK,
      );
      await first.close();
      const second = await startFixtureCore(port);
      try {
        // The first call after the restart may race the old session's close.
        let code = -1;
        for (let i = 0; i < 5 && code !== Code.OK; i++) {
          code = (await drain(
            up.call(chatPaths.SendMessage, once(sendReq("b")), {
              metadata: {},
              signal: noAbort(),
            }),
          )).status.code;
        }
        assert.equal(code, Code.OK);
        assert.equal(await up.healthy(), true);
      } finally {
        await second.close();
      }
    } finally {
      await up.close();
    }
  });

  Deno.test(`${name}.close() ends open streams with UNAVAILABLE`, async () => {
    const core = await startFixtureCore();
    const up = makeUpstream(`http://127.0.0.1:${core.port}`, LIMIT);
    try {
      const call = up.call(
        chatPaths.SubscribeMessages,
        once(
          toBinary(
            SubscribeRequestSchema,
            create(SubscribeRequestSchema, { room: "z", user: "q" }),
          ),
        ),
        { metadata: {}, signal: noAbort() },
      );
      await call.messages[Symbol.asyncIterator]().next();
      await core.waitForSubscribers(1);
      await up.close();
      const status = await call.status;
      assert.equal(status.code, Code.UNAVAILABLE);
      assert.match(status.message, /shutting down/);
      await core.waitForSubscribers(0);
    } finally {
      await up.close();
      await core.close();
    }
  });

  Deno.test(`${name} delivers all 200 echoes of a call read late (pause/resume path)`, () =>
    withCore(makeUpstream, async (up) => {
      async function* many() {
        for (let i = 0; i < 200; i++) {
          yield toBinary(
            MessageSchema,
            create(MessageSchema, { user: "u", room: "r", content: `c${i}` }),
          );
        }
      }
      const call = up.call(chatPaths.Chat, many(), {
        metadata: {},
        signal: noAbort(),
      });
      // Nobody reads for a while: the queue fills, pauses the stream, resumes.
      await new Promise((r) => setTimeout(r, 100));
      const r = await drain(call);
      assert.equal(r.status.code, Code.OK);
      assert.equal(r.messages.length, 200);
      assert.equal(
        fromBinary(MessageSchema, r.messages[199]).content,
        "Echo: c199",
      );
    }));

  Deno.test(`${name} speaks TLS to an https:// core and refuses an untrusted certificate`, async () => {
    const tls = await selfSigned();
    const core = await startFixtureCore();
    const front = tlsFront(tls, core.port);
    const trusted = makeUpstream(`https://127.0.0.1:${front.port}`, {
      ...LIMIT,
      ca: tls.cert,
    });
    const untrusted = makeUpstream(
      `https://127.0.0.1:${front.port}`,
      LIMIT,
    );
    try {
      const r = await drain(
        trusted.call(chatPaths.SendMessage, once(sendReq("tls")), {
          metadata: {},
          signal: noAbort(),
        }),
      );
      assert.equal(r.status.code, Code.OK, r.status.message);
      assert.match(
        fromBinary(SendMessageResponseSchema, r.messages[0]).messageId,
        /^msg_\d+$/,
      );
      assert.equal(await trusted.healthy(), true);
      const bad = await drain(
        untrusted.call(chatPaths.SendMessage, once(sendReq("tls")), {
          metadata: {},
          signal: noAbort(),
        }),
      );
      assert.equal(bad.status.code, Code.UNAVAILABLE);
      assert.match(bad.status.message, /certificate|UnknownIssuer|unknown/i);
    } finally {
      await trusted.close();
      await untrusted.close();
      await front.close();
      await core.close();
    }
  });

  Deno.test(`${name}.call() keeps the code of a StatusError abort reason`, () =>
    withCore(makeUpstream, async (up) => {
      const ctl = new AbortController();
      const call = up.call(chatPaths.SendMessage, once(sendReq("hang")), {
        metadata: {},
        signal: ctl.signal,
      });
      await call.headers.then(() => {}, () => {});
      ctl.abort(new StatusError(Code.DEADLINE_EXCEEDED, "handler deadline"));
      assert.deepEqual(await call.status, {
        code: Code.DEADLINE_EXCEEDED,
        message: "handler deadline",
        trailers: {},
      });
      const timeout = new AbortController();
      const timed = up.call(chatPaths.SendMessage, once(sendReq("hang")), {
        metadata: {},
        signal: timeout.signal,
      });
      timeout.abort(new DOMException("timed out", "TimeoutError"));
      assert.equal((await timed.status).code, Code.DEADLINE_EXCEEDED);
    }));
}
