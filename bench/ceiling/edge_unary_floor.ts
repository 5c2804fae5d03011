/**
 * The floor of a proxied unary call at the edge: CPU per call of a server
 * that does only what any gRPC-Web proxy on `Deno.serve` must do, in three
 * steps, so each step's cost can be read beside the edge's.
 *
 *   --mode serve   read the body, answer it back (no upstream at all)
 *   --mode h2      plus one upstream call to the core over the edge's own
 *                  HTTP/2 client (http2/client/), the answer framed as
 *                  gRPC-Web; no header reads, no metrics, no CORS
 *   --mode full    plus the header reads the edge makes (content type,
 *                  encodings, timeout, the four forwarded metadata names)
 *                  and its three response headers
 *
 *   taskset -c 0 deno run -A bench/ceiling/edge_unary_floor.ts \
 *     --upstream http://127.0.0.1:50051 --port 8090 --mode h2
 *   taskset -c 1 h2load --h1 -c 16 -n 20000 -d body.bin \
 *     -H 'content-type: application/grpc-web+proto' \
 *     http://127.0.0.1:8090/chat.ChatService/SendMessage
 *
 * Read this process's CPU from /proc/PID/stat before and after the load
 * (docs/perf-log.md, 2026-12-06 edge). SIGTERM ends it with exit code 0,
 * so that `--cpu-prof` writes its profile. A measuring tool only; not part
 * of the product.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createH2Upstream } from "../../edge/upstream/h2_upstream.ts";
import { encodeEnvelope, encodeGrpcWebTrailer } from "../../protocol/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    upstream: { type: "string", default: "http://127.0.0.1:50051" },
    port: { type: "string", default: "8090" },
    mode: { type: "string", default: "h2" },
  },
});
const mode = values.mode;
if (mode !== "serve" && mode !== "h2" && mode !== "full") {
  console.error("--mode must be serve, h2 or full");
  Deno.exit(2);
}
const HEADERS = [
  "content-type",
  "grpc-encoding",
  "grpc-accept-encoding",
  "grpc-timeout",
  "authorization",
  "custom-header-1",
  "x-user-agent",
  "x-request-id",
];
const TYPE: [string, string] = ["content-type", "application/grpc-web+proto"];
const CORS: [string, string][] = [
  ["access-control-allow-origin", "*"],
  ["access-control-expose-headers", "grpc-status,grpc-message"],
];
const trailer = encodeGrpcWebTrailer([["grpc-status", "0"]]);
const upstream = createH2Upstream(values.upstream, {
  maxMessageBytes: 4 << 20,
});

// The edge hands a small body over as a list of messages (no iterator):
// so does the floor, which must not do more than the edge.
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));

Deno.serve({ port: Number(values.port), onListen() {} }, async (request) => {
  const body = new Uint8Array(await request.arrayBuffer());
  if (mode === "serve") return new Response(body, { headers: [TYPE] });
  if (mode === "full") {
    for (const name of HEADERS) request.headers.get(name);
  }
  const call = upstream.call(
    "/chat.ChatService/SendMessage",
    [body.subarray(5)],
    {
      metadata: {},
      signal: new AbortController().signal,
      timeoutMs: undefined,
    },
  );
  const messages: Uint8Array[] = [];
  for await (const m of call.messages) messages.push(m);
  await call.status;
  const message = encodeEnvelope(0, messages[0] ?? new Uint8Array(0));
  const out = new Uint8Array(message.byteLength + trailer.byteLength);
  out.set(message);
  out.set(trailer, message.byteLength);
  return new Response(out, {
    headers: mode === "full" ? [TYPE, ...CORS] : [TYPE],
  });
});
