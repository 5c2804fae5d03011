/**
 * The Connect unary pass-through (edge/connect.ts `forwardUnary`), binary
 * and JSON, answers exactly as connect-es's router: same status, headers
 * and body bytes, same bytes and metadata to the core, same metrics. A
 * request with a declared `content-length` takes the pass-through; the same
 * request without one goes through the router.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary, toJsonString } from "@bufbuild/protobuf";
import { createEdgeApp } from "../edge/app.ts";
import { DEFAULT_EDGE_CONFIG } from "../edge/config.ts";
import type {
  CallOptions,
  Upstream,
  UpstreamStatus,
} from "../edge/upstream/types.ts";
import {
  SendMessageRequestSchema,
  SendMessageResponseSchema,
} from "../gen/chat_pb.ts";

interface Answer {
  headers?: Record<string, string>;
  messages: Uint8Array[];
  status: UpstreamStatus;
}

/** An upstream that records each call and answers with `answer`. */
function scriptedUpstream(
  answer: Answer,
  seen: { bytes: Uint8Array[]; options: CallOptions }[],
): Upstream {
  return {
    call(_path, requests, options) {
      const bytes: Uint8Array[] = [];
      seen.push({ bytes, options });
      const status = (async () => {
        for await (const m of requests) bytes.push(m);
        return answer.status;
      })();
      return {
        headers: Promise.resolve(answer.headers ?? {}),
        messages: {
          async *[Symbol.asyncIterator]() {
            await status;
            yield* answer.messages;
          },
        },
        status,
      };
    },
    healthy: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  };
}

const request = toBinary(
  SendMessageRequestSchema,
  create(SendMessageRequestSchema, { user: "ann", content: "hi", room: "r" }),
);
const response = (id: string) =>
  toBinary(
    SendMessageResponseSchema,
    create(SendMessageResponseSchema, { messageId: id, offset: 7n }),
  );

/** The same request as JSON, for the JSON runs. */
function asJson(binary: Uint8Array): Uint8Array {
  return new TextEncoder().encode(
    toJsonString(
      SendMessageRequestSchema,
      fromBinary(SendMessageRequestSchema, binary),
    ),
  );
}

// label, the core's answer, the binary request (turned into JSON for the
// JSON runs), extra request headers.
const cases: [string, Answer, Uint8Array, Record<string, string>][] = [
  [
    "ok with headers and trailers",
    {
      headers: { "custom-header-1": "h", "x-two": "2" },
      messages: [response("m1")],
      status: { code: 0, message: "", trailers: { "x-trailer": "t" } },
    },
    request,
    {},
  ],
  [
    "ok, no metadata",
    {
      messages: [response("m1")],
      status: { code: 0, message: "", trailers: {} },
    },
    request,
    {},
  ],
  [
    "ok, large answer gzipped",
    {
      messages: [response("m".repeat(3000))],
      status: { code: 0, message: "", trailers: {} },
    },
    request,
    { "accept-encoding": "gzip" },
  ],
  [
    "ok, large answer, no accept-encoding",
    {
      messages: [response("m".repeat(3000))],
      status: { code: 0, message: "", trailers: {} },
    },
    request,
    {},
  ],
  [
    "error with metadata",
    {
      headers: { "custom-header-1": "h" },
      messages: [],
      status: {
        code: 5,
        message: "no such room: é",
        trailers: { "x-trailer": "t", "grpc-x": "dropped" },
      },
    },
    request,
    {},
  ],
  [
    "error, large message gzipped",
    {
      messages: [],
      status: { code: 9, message: "x".repeat(2000), trailers: {} },
    },
    request,
    { "accept-encoding": "br, gzip" },
  ],
  [
    "ok with no message",
    {
      messages: [],
      status: { code: 0, message: "", trailers: {} },
    },
    request,
    {},
  ],
  [
    "ok with two messages",
    {
      messages: [response("a"), response("b")],
      status: { code: 0, message: "", trailers: {} },
    },
    request,
    {},
  ],
  [
    "empty request",
    {
      messages: [response("m1")],
      status: { code: 0, message: "", trailers: {} },
    },
    new Uint8Array(0),
    { authorization: "Bearer x", "x-not-forwarded": "n" },
  ],
  [
    "malformed request",
    {
      messages: [response("m1")],
      status: { code: 0, message: "", trailers: {} },
    },
    new Uint8Array([0x0a, 0xff]),
    {},
  ],
];

interface Run {
  format: "proto" | "json";
  label: string;
  answer: Answer;
  /** The request body as sent, and as the core must receive it. */
  body: Uint8Array;
  toCore: Uint8Array;
  extra: Record<string, string>;
  maxMessageBytes?: number;
  /** The request is refused before any call (HTTP status). */
  refused?: number;
}

const runs: Run[] = [];
for (const [label, answer, binary, extra] of cases) {
  runs.push({
    format: "proto",
    label,
    answer,
    body: binary,
    toCore: binary,
    extra,
    refused: label === "malformed request" ? 500 : undefined,
  });
  if (label === "malformed request" || label === "empty request") continue;
  runs.push({
    format: "json",
    label,
    answer,
    body: asJson(binary),
    toCore: binary,
    extra,
  });
}
const jsonRequest = asJson(request);
runs.push(
  {
    format: "json",
    label: "empty request",
    answer: cases[0][1],
    body: new Uint8Array(0),
    toCore: request,
    extra: {},
    refused: 400,
  },
  {
    format: "json",
    label: "malformed request (wrong field type)",
    answer: cases[0][1],
    body: new TextEncoder().encode('{"user": 5}'),
    toCore: request,
    extra: {},
    refused: 400,
  },
  {
    format: "json",
    label: "request not UTF-8",
    answer: cases[0][1],
    body: new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d]),
    toCore: request,
    extra: {},
    refused: 400,
  },
  {
    format: "json",
    label: "the core's answer is not a message",
    answer: {
      headers: { "custom-header-1": "h" },
      messages: [new Uint8Array([0x0a, 0xff])],
      status: { code: 0, message: "", trailers: { "x-trailer": "t" } },
    },
    body: jsonRequest,
    toCore: request,
    extra: {},
  },
  {
    format: "json",
    label: "the answer as JSON is beyond the message limit",
    answer: {
      messages: [response("m".repeat(30))],
      status: { code: 0, message: "", trailers: {} },
    },
    body: jsonRequest,
    toCore: request,
    extra: {},
    maxMessageBytes: jsonRequest.length + 5,
  },
);

for (const run of runs) {
  const { format, label, answer, body, extra } = run;
  Deno.test(`edge Connect ${format} pass-through answers as the router: ${label}`, async () => {
    const once = async (declareLength: boolean) => {
      const seen: { bytes: Uint8Array[]; options: CallOptions }[] = [];
      const app = createEdgeApp({
        upstream: scriptedUpstream(answer, seen),
        config: {
          ...DEFAULT_EDGE_CONFIG,
          logFormat: "off",
          maxMessageBytes: run.maxMessageBytes ??
            DEFAULT_EDGE_CONFIG.maxMessageBytes,
        },
      });
      const res = await app.fetch(
        new Request("http://edge.test/chat.ChatService/SendMessage", {
          method: "POST",
          headers: {
            "content-type": `application/${format}`,
            ...extra,
            ...(declareLength ? { "content-length": `${body.length}` } : {}),
          },
          body: body as Uint8Array<ArrayBuffer>,
        }),
      );
      const answered = {
        status: res.status,
        headers: [...res.headers].filter(([k]) => k !== "date").sort(),
        body: new Uint8Array(await res.arrayBuffer()),
      };
      const metrics = await (await app.fetch(
        new Request("http://edge.test/metrics"),
      )).text();
      return {
        answered,
        upstream: seen.map((s) => ({
          bytes: s.bytes,
          metadata: s.options.metadata,
          timeoutMs: s.options.timeoutMs,
        })),
        // Call counts and byte counters, not durations or process gauges.
        metrics: metrics.split("\n").filter((l) =>
          /^chat_edge_(calls_total|received_bytes|sent_bytes|active_calls)/
            .test(l) ||
          /^chat_edge_call_duration_seconds_count/.test(l)
        ),
      };
    };
    const fast = await once(true);
    const routed = await once(false);
    assert.deepEqual(fast, routed);
    assert.ok(fast.metrics.length > 0, "the metrics were read");
    if (run.refused !== undefined) {
      assert.equal(fast.answered.status, run.refused);
      assert.equal(fast.upstream.length, 0);
    } else {
      assert.equal(fast.upstream.length, 1);
      assert.deepEqual(fast.upstream[0].bytes, [run.toCore]);
    }
    if (format === "json" && label === "ok with headers and trailers") {
      assert.deepEqual(
        JSON.parse(new TextDecoder().decode(fast.answered.body)),
        { messageId: "m1", offset: "7" },
      );
    }
  });
}
