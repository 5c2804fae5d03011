import assert from "node:assert/strict";
import {
  encodeGrpcWebTrailer,
  EnvelopeParser,
  FLAG_TRAILER,
  parseGrpcWebTrailer,
  ProtocolError,
} from "./mod.ts";

const enc = new TextEncoder();

Deno.test("encodeGrpcWebTrailer() round-trips through parseGrpcWebTrailer()", () => {
  const frame = encodeGrpcWebTrailer({
    "grpc-status": "3",
    "Grpc-Message": "bad%20thing",
    "custom-header-1": "v",
  });
  assert.equal(frame[0], FLAG_TRAILER);
  const [env] = new EnvelopeParser({
    maxMessageBytes: 1000,
    allowedFlags: 0x80,
  })
    .push(frame);
  assert.deepEqual(parseGrpcWebTrailer(env.data), {
    "grpc-status": "3",
    "grpc-message": "bad%20thing",
    "custom-header-1": "v",
  });
});

Deno.test("encodeGrpcWebTrailer() uses a 4-byte length for long messages", () => {
  const frame = encodeGrpcWebTrailer({ "grpc-message": "x".repeat(70000) });
  const len = new DataView(frame.buffer).getUint32(1);
  assert.equal(len, frame.length - 5);
  assert.ok(len > 65536);
});

Deno.test("encodeGrpcWebTrailer() rejects values that would forge lines", () => {
  assert.throws(
    () => encodeGrpcWebTrailer({ "grpc-message": "a\r\ngrpc-status: 0" }),
    (e) => e instanceof ProtocolError && e.kind === "trailer",
  );
});

Deno.test("parseGrpcWebTrailer() rejects a line with no colon and non-UTF-8", () => {
  assert.throws(
    () => parseGrpcWebTrailer(enc.encode("grpc-status 0\r\n")),
    (e) => e instanceof ProtocolError && e.kind === "trailer",
  );
  assert.throws(
    () => parseGrpcWebTrailer(new Uint8Array([0xff, 0x3a])),
    (e) => e instanceof ProtocolError && e.kind === "trailer",
  );
});

Deno.test("parseGrpcWebTrailer() joins repeated names and accepts bare LF", () => {
  assert.deepEqual(parseGrpcWebTrailer(enc.encode("a: 1\nA: 2\n")), {
    a: "1, 2",
  });
});
