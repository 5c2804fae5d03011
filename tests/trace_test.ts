/**
 * Tracing through the edge to the core with Deno's built-in OpenTelemetry:
 * both run as processes with OTEL_DENO=true, exporting OTLP/HTTP JSON to a
 * receiver this test runs; the core's span for a call must be a child of the
 * edge's request span, in the trace the caller started.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "../gen/chat_pb.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { readGrpcWeb } from "./fixtures/edge_raw.ts";
import { edgeArgs, spawnDeno } from "./fixtures/deno_process.ts";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
}

interface Exported {
  service: string;
  span: OtlpSpan;
}

/** An OTLP/HTTP JSON receiver on 127.0.0.1:0 that keeps every span. */
function startReceiver() {
  const spans: Exported[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const body = await request.json();
      if (new URL(request.url).pathname === "/v1/traces") {
        for (const rs of body.resourceSpans ?? []) {
          const service = rs.resource?.attributes?.find((
            a: { key: string },
          ) => a.key === "service.name")?.value?.stringValue;
          for (const ss of rs.scopeSpans ?? []) {
            for (const span of ss.spans ?? []) spans.push({ service, span });
          }
        }
      }
      return Response.json({});
    },
  );
  return { spans, url: `http://127.0.0.1:${server.addr.port}`, server };
}

/** Starts `deno <args>` with OTEL on; resolves once it listens. */
async function startProcess(args: string[], service: string, otlp: string) {
  const child = spawnDeno(args, {
    OTEL_DENO: "true",
    OTEL_SERVICE_NAME: service,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp,
  });
  let line = await child.nextLine();
  while (!line.includes("listening on")) line = await child.nextLine();
  const port = Number(/listening on \S*?:(\d+)/.exec(line)![1]);
  return { port, stop: () => child.stop() };
}

Deno.test("OTEL_DENO: the core's span for a call is a child of the edge's, in the caller's trace", async () => {
  const receiver = startReceiver();
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const connectTraceId = "5bf92f3577b34da6a3ce929d0e0e4737";
  const core = await startProcess(
    ["run", "-A", "server/main.ts", "--port", "0", "--alive-interval-ms", "0"],
    "chat-core",
    receiver.url,
  );
  let edge: Awaited<ReturnType<typeof startProcess>> | undefined;
  const client = Deno.createHttpClient({});
  try {
    edge = await startProcess(
      edgeArgs(`http://127.0.0.1:${core.port}`, "--log-format", "off"),
      "chat-edge",
      receiver.url,
    );
    const r = await readGrpcWeb(
      await fetch(
        `http://127.0.0.1:${edge.port}/chat.ChatService/SendMessage`,
        {
          method: "POST",
          headers: {
            "content-type": "application/grpc-web+proto",
            traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
          },
          body: encodeEnvelope(
            0,
            toBinary(
              SendMessageRequestSchema,
              create(SendMessageRequestSchema, {
                user: "u",
                room: "r",
                content: "traced",
              }),
            ),
          ),
          client,
        } as RequestInit,
      ),
    );
    assert.equal(r.grpcStatus, 0, r.grpcMessage);
    // Connect goes through connect-es's router, across awaits.
    const c = await fetch(
      `http://127.0.0.1:${edge.port}/chat.ChatService/SendMessage`,
      {
        method: "POST",
        headers: {
          "content-type": "application/json",
          traceparent: `00-${connectTraceId}-00f067aa0ba902b7-01`,
        },
        body: JSON.stringify({ user: "u", room: "r", content: "traced" }),
        client,
      } as RequestInit,
    );
    assert.equal(c.status, 200, await c.text());
  } finally {
    client.close();
    // Exiting flushes each process's spans to the receiver.
    await edge?.stop();
    await core.stop();
  }
  try {
    const inTrace = receiver.spans.filter((s) => s.span.traceId === traceId);
    const coreSpan = inTrace.find((s) =>
      s.service === "chat-core" &&
      s.span.name === "chat.ChatService/SendMessage"
    );
    const edgeSpan = inTrace.find((s) => s.service === "chat-edge");
    assert.ok(
      coreSpan && edgeSpan,
      `spans: ${
        JSON.stringify(receiver.spans.map((s) => [s.service, s.span.name]))
      }`,
    );
    assert.equal(coreSpan.span.kind, 2, "SERVER");
    assert.equal(coreSpan.span.parentSpanId, edgeSpan.span.spanId);
    assert.equal(edgeSpan.span.parentSpanId, "00f067aa0ba902b7");
    const status = coreSpan.span.attributes?.find((a) =>
      a.key === "rpc.grpc.status_code"
    );
    // Deno exports JS numbers as doubleValue.
    assert.equal(
      Number(status?.value.intValue ?? status?.value.doubleValue),
      0,
      JSON.stringify(coreSpan.span),
    );
    const viaConnect = receiver.spans.filter((s) =>
      s.span.traceId === connectTraceId
    );
    const connectCore = viaConnect.find((s) => s.service === "chat-core");
    const connectEdge = viaConnect.find((s) => s.service === "chat-edge");
    assert.ok(connectCore && connectEdge, "Connect call spans");
    assert.equal(connectCore.span.parentSpanId, connectEdge.span.spanId);
  } finally {
    await receiver.server.shutdown();
  }
});
