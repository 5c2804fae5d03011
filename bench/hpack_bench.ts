/**
 * HPACK decode and encode costs on the blocks a gRPC call sees: the
 * response headers and trailers in their first (literal, Huffman-coded) and
 * steady-state (indexed from the dynamic table) forms, and a request's
 * headers from the stateless encoder.
 *
 * Run: `deno bench bench/hpack_bench.ts`.
 *
 * @module
 */
import {
  type HeaderField,
  HpackDecoder,
  HpackEncoder,
} from "../protocol/http2/hpack.ts";

const encoder = new HpackEncoder();

const request: HeaderField[] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/chat.ChatService/SendMessage"],
  [":authority", "127.0.0.1:50051"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
  ["grpc-accept-encoding", "identity,deflate,gzip"],
  ["user-agent", "grpc-node-js/1.14.7"],
  ["grpc-timeout", "4999m"],
];

const responseFields: HeaderField[] = [
  [":status", "200"],
  ["content-type", "application/grpc"],
  ["grpc-accept-encoding", "identity,deflate,gzip"],
  ["grpc-encoding", "identity"],
];
const trailerFields: HeaderField[] = [
  ["grpc-status", "0"],
  ["grpc-message", ""],
];

/** A block with every field as a literal with incremental indexing. */
function indexingBlock(fields: HeaderField[]): Uint8Array {
  // The encoder writes literals without indexing (first octet 0000xxxx, or
  // 0x00 for a new name); flipping them to 01xxxxxx would change the
  // prefix width, so build the indexing form by hand with raw strings.
  const out: number[] = [];
  for (const [name, value] of fields) {
    out.push(0x40, name.length, ...Array.from(name, (c) => c.charCodeAt(0)));
    out.push(value.length, ...Array.from(value, (c) => c.charCodeAt(0)));
  }
  return Uint8Array.from(out);
}

const firstResponse = encoder.encode(responseFields); // Huffman literals
const firstTrailers = encoder.encode(trailerFields);
// After the peer indexed both (4 + 2 entries), responses refer to :status
// 200 in the static table and entries 64-66 (behind the two trailer
// entries), trailers to 62-63.
const warm = new HpackDecoder();
warm.decode(indexingBlock(responseFields));
warm.decode(indexingBlock(trailerFields));
const steadyResponse = Uint8Array.of(0x88, 0x80 | 66, 0x80 | 65, 0x80 | 64);
const steadyTrailers = Uint8Array.of(0x80 | 63, 0x80 | 62);

const cold = new HpackDecoder();
for (
  const [block, want] of [
    [steadyResponse, responseFields],
    [steadyTrailers, trailerFields],
  ] as const
) {
  if (JSON.stringify(warm.decode(block)) !== JSON.stringify(want)) {
    throw new Error("bench blocks do not decode to the fields they stand for");
  }
}

Deno.bench(
  "decode response headers, literals + Huffman",
  { group: "response" },
  () => {
    cold.decode(firstResponse);
  },
);
Deno.bench("decode response headers, indexed", {
  group: "response",
  baseline: true,
}, () => {
  warm.decode(steadyResponse);
});
Deno.bench("decode trailers, literals + Huffman", { group: "trailers" }, () => {
  cold.decode(firstTrailers);
});
Deno.bench(
  "decode trailers, indexed",
  { group: "trailers", baseline: true },
  () => {
    warm.decode(steadyTrailers);
  },
);
Deno.bench("encode request headers", { group: "encode" }, () => {
  encoder.encode(request);
});
