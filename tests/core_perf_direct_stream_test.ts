/**
 * The direct server-streaming path (server/grpcjs/direct_stream.ts): it is
 * really taken with this grpc-js version, on the core's own HTTP/2 server
 * and on `node:http2`, and a call on it ends as grpc-js's would: messages,
 * then trailers (with the error's metadata); trailers-only before any
 * message; UNIMPLEMENTED for no or two requests; DEADLINE_EXCEEDED with
 * 'cancelled'; a client cancel as 'cancelled'; UNKNOWN for a handler that
 * throws; RESOURCE_EXHAUSTED over the send limit; compressed requests left
 * to grpc-js. Correctness only, no timing.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { listenWithH2 } from "../server/grpcjs/h2_transport.ts";
import {
  DirectServerCall,
  enableDirectStreams,
} from "../server/grpcjs/direct_stream.ts";
import { messageWriter } from "../server/grpcjs/raw_stream.ts";
import { frameMessage } from "../server/grpc/framing.ts";

const PATH = "/test.Stream/Watch";
const identity = (b: Buffer) => b;
const text = (b: Uint8Array) => Buffer.from(b).toString();

/** What the handler saw, per request text. */
interface Seen {
  direct: string[];
  grpcJs: string[];
  cancelled: string[];
  /** Calls whose 'finish' came before their 'cancelled'. */
  finished: string[];
}

/**
 * The test method: the request text says what to do. `n:3` writes three
 * messages and ends OK; `fail` writes one then fails with PERMISSION_DENIED
 * and a trailer; `fail-first` fails before any message; `throw` throws;
 * `hold` writes one and stays open; `big` writes a message over the limit.
 */
function watch(seen: Seen) {
  return (
    call: grpc.ServerWritableStream<Buffer, Buffer> | DirectServerCall,
  ) => {
    const req = text(call.request as Buffer);
    (call instanceof DirectServerCall ? seen.direct : seen.grpcJs).push(req);
    const events = call as grpc.ServerWritableStream<Buffer, Buffer>;
    events.on("cancelled", () => seen.cancelled.push(req));
    // Call counting takes the first of 'finish' and 'cancelled'.
    events.on(
      "finish",
      () => seen.cancelled.includes(req) || seen.finished.push(req),
    );
    const writer = messageWriter(call);
    if (req.startsWith("n:")) {
      for (let i = 0; i < Number(req.slice(2)); i++) {
        writer.write(frameMessage(Buffer.from(`m${i}`)));
      }
      writer.flush();
      call.end();
    } else if (req === "fail" || req === "fail-first") {
      if (req === "fail") writer.write(frameMessage(Buffer.from("m0")));
      writer.flush();
      const metadata = new grpc.Metadata();
      metadata.set("retry-after-ms", "250");
      call.emit(
        "error",
        Object.assign(new Error("no"), {
          code: grpc.status.PERMISSION_DENIED,
          details: "not you",
          metadata,
        }),
      );
    } else if (req === "throw") {
      throw new Error("handler bug");
    } else if (req === "hold") {
      writer.write(frameMessage(Buffer.from("m0")));
    } else if (req === "big") {
      writer.write(frameMessage(Buffer.alloc(3000)));
    }
  };
}

async function startBare(transport: "h2" | "node", seen: Seen) {
  const server = new grpc.Server({
    "grpc.enable_channelz": 0,
    "grpc.max_send_message_length": 2000,
  });
  const handler = watch(seen);
  server.addService({
    Watch: {
      path: PATH,
      requestStream: false,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  }, { Watch: handler as grpc.handleServerStreamingCall<Buffer, Buffer> });
  let port: number;
  let close: () => Promise<void>;
  if (transport === "h2") {
    const listener = listenWithH2(server, {
      host: "127.0.0.1",
      port: 0,
      maxConcurrentStreams: 100,
    });
    port = listener.port;
    close = async () => {
      listener.destroy();
      await listener.closed;
    };
  } else {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        "127.0.0.1:0",
        grpc.ServerCredentials.createInsecure(),
        (err, p) => err ? reject(err) : resolve(p),
      )
    );
    close = () => Promise.resolve();
  }
  const patched = enableDirectStreams(
    server,
    new Map([[PATH, {
      decode: (b: Uint8Array) => Buffer.from(b),
      handler: handler as (call: DirectServerCall) => void,
    }]]),
    { maxMessageBytes: 1 << 20, maxSendMessageBytes: 2000 },
  );
  return {
    port,
    patched,
    async [Symbol.asyncDispose]() {
      await close();
      server.forceShutdown();
    },
  };
}

interface Outcome {
  messages: string[];
  code: number;
  details: string;
  retryAfter: unknown[];
}

/** One Watch call with grpc-js's client; resolves with what came back. */
function call(
  client: grpc.Client,
  request: string,
  options: grpc.CallOptions = {},
  onFirst?: (call: grpc.ClientReadableStream<Buffer>) => void,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const messages: string[] = [];
    const stream = client.makeServerStreamRequest(
      PATH,
      identity,
      identity,
      Buffer.from(request),
      new grpc.Metadata(),
      options,
    );
    stream.on("data", (b: Buffer) => {
      messages.push(b.toString());
      if (messages.length === 1) onFirst?.(stream);
    });
    stream.on("error", () => {});
    stream.on("status", (s: grpc.StatusObject) =>
      resolve({
        messages,
        code: s.code,
        details: s.details,
        retryAfter: s.metadata.get("retry-after-ms"),
      }));
  });
}

const settle = () => new Promise((r) => setTimeout(r, 50));

for (const transport of ["h2", "node"] as const) {
  Deno.test(`enableDirectStreams() serves the registered path on ${transport}, with grpc-js's statuses`, async () => {
    const seen: Seen = { direct: [], grpcJs: [], cancelled: [], finished: [] };
    await using bare = await startBare(transport, seen);
    assert.equal(bare.patched, 1, "grpc-js internals changed: fallback");
    const client = new grpc.Client(
      `127.0.0.1:${bare.port}`,
      grpc.credentials.createInsecure(),
    );
    try {
      assert.deepEqual(await call(client, "n:3"), {
        messages: ["m0", "m1", "m2"],
        code: grpc.status.OK,
        details: "OK",
        retryAfter: [],
      });
      assert.deepEqual(await call(client, "n:0"), {
        messages: [],
        code: grpc.status.OK,
        details: "OK",
        retryAfter: [],
      });
      assert.deepEqual(await call(client, "fail"), {
        messages: ["m0"],
        code: grpc.status.PERMISSION_DENIED,
        details: "not you",
        retryAfter: ["250"],
      });
      assert.deepEqual(await call(client, "fail-first"), {
        messages: [],
        code: grpc.status.PERMISSION_DENIED,
        details: "not you",
        retryAfter: ["250"],
      });
      const thrown = await call(client, "throw");
      assert.deepEqual(
        [thrown.code, thrown.details],
        [grpc.status.UNKNOWN, "Unknown error"],
      );
      const big = await call(client, "big");
      assert.equal(big.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(
        big.details,
        /Sent message larger than max \(3005 vs\. 2000\)/,
      );
      await settle();
      assert.deepEqual(seen.grpcJs, []);
      assert.deepEqual(seen.direct, [
        "n:3",
        "n:0",
        "fail",
        "fail-first",
        "throw",
        "big",
      ]);
      // 'cancelled' follows every status, as grpc-js emits it; 'finish'
      // comes first after an OK end.
      assert.deepEqual(seen.cancelled.sort(), [...seen.direct].sort());
      assert.deepEqual(seen.finished, ["n:3", "n:0"]);
    } finally {
      client.close();
    }
  });

  Deno.test(`DirectServerCall on ${transport}: a deadline ends it with DEADLINE_EXCEEDED and 'cancelled'; so does a client cancel`, async () => {
    const seen: Seen = { direct: [], grpcJs: [], cancelled: [], finished: [] };
    await using bare = await startBare(transport, seen);
    const client = new grpc.Client(
      `127.0.0.1:${bare.port}`,
      grpc.credentials.createInsecure(),
    );
    try {
      const late = await call(client, "hold", {
        deadline: Date.now() + 300,
      });
      assert.deepEqual(late.messages, ["m0"]);
      assert.equal(late.code, grpc.status.DEADLINE_EXCEEDED);
      const cancelled = await call(client, "hold", {}, (s) => s.cancel());
      assert.equal(cancelled.code, grpc.status.CANCELLED);
      for (let i = 0; i < 50 && seen.cancelled.length < 2; i++) await settle();
      assert.deepEqual(seen.cancelled, ["hold", "hold"]);
      assert.deepEqual(seen.grpcJs, []);
    } finally {
      client.close();
    }
  });
}

Deno.test("enableDirectStreams() leaves a compressed call to grpc-js", async () => {
  const seen: Seen = { direct: [], grpcJs: [], cancelled: [], finished: [] };
  await using bare = await startBare("h2", seen);
  const client = new grpc.Client(
    `127.0.0.1:${bare.port}`,
    grpc.credentials.createInsecure(),
    {
      "grpc.default_compression_algorithm": 2,
      "grpc.default_compression_level": 2,
    },
  );
  try {
    const out = await call(client, "n:2");
    assert.deepEqual([out.messages, out.code], [["m0", "m1"], grpc.status.OK]);
    assert.deepEqual([seen.direct, seen.grpcJs], [[], ["n:2"]]);
  } finally {
    client.close();
  }
});

Deno.test("enableDirectStreams() answers no request, two requests and a bad grpc-timeout as grpc-js does", async () => {
  const seen: Seen = { direct: [], grpcJs: [], cancelled: [], finished: [] };
  await using bare = await startBare("h2", seen);
  const session = http2.connect(`http://127.0.0.1:${bare.port}`);
  session.on("error", () => {});
  const raw = (body: Uint8Array, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; message: string }>((resolve) => {
      const stream = session.request({
        ":method": "POST",
        ":path": PATH,
        "content-type": "application/grpc",
        te: "trailers",
        ...headers,
      });
      stream.on("error", () => {});
      stream.on("data", () => {});
      const read = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] === undefined) return;
        resolve({
          status: Number(h["grpc-status"]),
          message: decodeURIComponent(String(h["grpc-message"] ?? "")),
        });
      };
      stream.on("response", read);
      stream.on("trailers", read);
      stream.end(body);
    });
  try {
    const one = frameMessage(Buffer.from("n:1"));
    assert.deepEqual(await raw(new Uint8Array(0)), {
      status: grpc.status.UNIMPLEMENTED,
      message:
        `Received no request message for server streaming method ${PATH}`,
    });
    assert.deepEqual(await raw(Buffer.concat([one, one])), {
      status: grpc.status.UNIMPLEMENTED,
      message:
        `Received a second request message for server streaming method ${PATH}`,
    });
    assert.deepEqual(await raw(one, { "grpc-timeout": "soon" }), {
      status: grpc.status.INTERNAL,
      message: 'Invalid grpc-timeout value "soon"',
    });
    assert.deepEqual(seen, {
      direct: [],
      grpcJs: [],
      cancelled: [],
      finished: [],
    });
  } finally {
    await new Promise<void>((r) => session.close(() => r()));
  }
});
