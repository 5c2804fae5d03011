import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  encodeEnvelope,
  EnvelopeMeter,
  EnvelopeParser,
  FLAG_COMPRESSED,
  FLAG_TRAILER,
  ProtocolError,
  readEnvelopeLength,
  writeEnvelopeHeader,
} from "./mod.ts";
import { concat } from "../tests/fixtures/edge_raw.ts";

const bytes = (...n: number[]) => new Uint8Array(n);

function parseAll(parser: EnvelopeParser, chunks: Uint8Array[]) {
  const out = chunks.flatMap((c) => parser.push(c));
  parser.finish();
  return out.map((e) => ({ flags: e.flags, data: [...e.data] }));
}

Deno.test("encodeEnvelope() writes flags and a 4-byte big-endian length", () => {
  const frame = encodeEnvelope(FLAG_TRAILER, new Uint8Array(300));
  assert.deepEqual([...frame.subarray(0, 5)], [0x80, 0, 0, 1, 44]);
  assert.equal(frame.length, 305);
});

Deno.test("EnvelopeParser.push() splits frames within one chunk", () => {
  const p = new EnvelopeParser({ maxMessageBytes: 100, allowedFlags: 0 });
  const joined = new Uint8Array([
    ...encodeEnvelope(0, bytes(1, 2)),
    ...encodeEnvelope(0, bytes()),
    ...encodeEnvelope(0, bytes(3)),
  ]);
  assert.deepEqual(parseAll(p, [joined]), [
    { flags: 0, data: [1, 2] },
    { flags: 0, data: [] },
    { flags: 0, data: [3] },
  ]);
});

Deno.test("EnvelopeParser.push() reassembles frames fed one byte at a time", () => {
  const p = new EnvelopeParser({ maxMessageBytes: 100, allowedFlags: 0x80 });
  const joined = new Uint8Array([
    ...encodeEnvelope(0, bytes(9, 8, 7)),
    ...encodeEnvelope(0, bytes()),
    ...encodeEnvelope(0x80, bytes(65)),
  ]);
  const chunks = [...joined].map((b) => bytes(b));
  assert.deepEqual(parseAll(p, chunks), [
    { flags: 0, data: [9, 8, 7] },
    { flags: 0, data: [] },
    { flags: 0x80, data: [65] },
  ]);
});

Deno.test("EnvelopeParser.finish() throws truncated inside a header or body", () => {
  for (const cut of [1, 4, 6]) {
    const p = new EnvelopeParser({ maxMessageBytes: 100, allowedFlags: 0 });
    p.push(encodeEnvelope(0, bytes(1, 2, 3)).subarray(0, cut));
    assert.throws(
      () => p.finish(),
      (e) => e instanceof ProtocolError && e.kind === "truncated",
    );
  }
});

Deno.test("EnvelopeParser.push() rejects an oversize length before the body arrives", () => {
  const p = new EnvelopeParser({ maxMessageBytes: 10, allowedFlags: 0 });
  // Only the header: a 4 GiB declared length must fail without allocating.
  assert.throws(
    () => p.push(bytes(0, 0xff, 0xff, 0xff, 0xff)),
    (e) => e instanceof ProtocolError && e.kind === "oversize",
  );
  const q = new EnvelopeParser({ maxMessageBytes: 10, allowedFlags: 0 });
  q.push(bytes(0, 0, 0));
  assert.throws(
    () => q.push(bytes(0, 11)),
    (e) => e instanceof ProtocolError && e.kind === "oversize",
  );
});

Deno.test("EnvelopeParser.push() accepts a message exactly at the limit", () => {
  const p = new EnvelopeParser({ maxMessageBytes: 4, allowedFlags: 0 });
  assert.equal(p.push(encodeEnvelope(0, bytes(1, 2, 3, 4)))[0].data.length, 4);
});

Deno.test("EnvelopeParser.push() rejects flags outside the allowed mask", () => {
  const p = new EnvelopeParser({ maxMessageBytes: 10, allowedFlags: 0 });
  assert.throws(
    () => p.push(encodeEnvelope(FLAG_COMPRESSED, bytes(1))),
    (e) =>
      e instanceof ProtocolError && e.kind === "flags" &&
      /0x01/.test(e.message),
  );
  const q = new EnvelopeParser({ maxMessageBytes: 10, allowedFlags: 0 });
  assert.throws(
    () => q.push(bytes(0x80)) && q.push(bytes(0, 0, 0, 0)),
    (e) => e instanceof ProtocolError && e.kind === "flags",
  );
});

Deno.test("EnvelopeParser.push() does not share state between payload views", () => {
  const p = new EnvelopeParser({ maxMessageBytes: 10, allowedFlags: 0 });
  const frame = encodeEnvelope(0, bytes(5, 6, 7));
  const [a] = p.push(frame.subarray(0, 6));
  assert.equal(a, undefined);
  const [b] = p.push(frame.subarray(6));
  const [c] = p.push(encodeEnvelope(0, bytes(1, 1, 1)).subarray(0, 8));
  assert.equal(c.data[0], 1);
  assert.deepEqual([...b.data], [5, 6, 7]);
});

Deno.test("writeEnvelopeHeader() and readEnvelopeLength() agree with encodeEnvelope() up to 2^32-1", () => {
  for (const length of [0, 1, 255, 256, 65_536, 2 ** 31, 2 ** 32 - 1]) {
    const buf = new Uint8Array(8);
    writeEnvelopeHeader(buf, 2, FLAG_TRAILER, length);
    assert.equal(buf[2], FLAG_TRAILER);
    assert.equal(readEnvelopeLength(buf, 2), length);
    assert.equal(new DataView(buf.buffer).getUint32(3), length);
  }
  const framed = encodeEnvelope(0, new Uint8Array(300));
  assert.equal(readEnvelopeLength(framed, 0), 300);
});

Deno.test("EnvelopeParser.push() grows a large body with the bytes that arrive, and the message comes out whole", () => {
  const parser = new EnvelopeParser({
    maxMessageBytes: 8 * 1024 * 1024,
    allowedFlags: 0,
  });
  const body = new Uint8Array(1_000_000).map((_, i) => i % 251);
  const framed = encodeEnvelope(0, body);
  const out = [];
  for (let at = 0; at < framed.byteLength; at += 10_000) {
    out.push(...parser.push(framed.subarray(at, at + 10_000)));
  }
  assert.equal(out.length, 1);
  assert.equal(out[0].data.byteLength, body.byteLength);
  assert.deepEqual(out[0].data, body);
  parser.finish();
});

Deno.test("EnvelopeMeter.push() counts the prefix and the body bytes of the unfinished envelope only", () => {
  const meter = new EnvelopeMeter();
  assert.equal(meter.push(bytes(0, 0, 0)), 3, "a partial prefix");
  assert.equal(meter.push(bytes(0, 9, 1, 2)), 7, "5 + 2 of 9 body bytes");
  assert.equal(meter.push(new Uint8Array(7)), 0, "the envelope is complete");
  // A whole envelope, an empty one and the start of a third in one chunk.
  const chunk = concat([
    encodeEnvelope(0, new Uint8Array(4)),
    encodeEnvelope(0, new Uint8Array(0)),
    bytes(0, 0, 0x10, 0, 0, 1),
  ]);
  assert.equal(meter.push(chunk), 6);
  assert.equal(meter.unfinished, 6);
});

Deno.test("EnvelopeParser.push() returns whole frames of a Buffer as plain Uint8Array views of its memory", () => {
  const chunk = Buffer.from([0, 0, 0, 0, 2, 7, 8, 0, 0, 0, 0, 1, 9]);
  const p = new EnvelopeParser({ maxMessageBytes: 100, allowedFlags: 0 });
  const [a, b] = p.push(chunk);
  // Not a Buffer: a copy by slice() must copy (Buffer's slice() is a view).
  assert.equal(Object.getPrototypeOf(a.data), Uint8Array.prototype);
  assert.deepEqual([...a.data, ...b.data], [7, 8, 9]);
  chunk[5] = 1;
  assert.equal(a.data[0], 1, "a view, not a copy");
});
