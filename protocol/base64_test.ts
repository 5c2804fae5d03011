import assert from "node:assert/strict";
import { Base64Decoder, encodeBase64, ProtocolError } from "./mod.ts";

const isBase64Error = (e: unknown) =>
  e instanceof ProtocolError && e.kind === "base64";

function decodeAll(chunks: string[]): number[] {
  const d = new Base64Decoder();
  const out = chunks.flatMap((c) => [...d.push(c)]);
  return [...out, ...d.finish()];
}

Deno.test("encodeBase64() matches btoa for every tail length", () => {
  for (let n = 0; n < 8; n++) {
    const data = Uint8Array.from({ length: n }, (_, i) => (i * 97 + 200) & 255);
    assert.equal(encodeBase64(data), btoa(String.fromCharCode(...data)));
  }
});

Deno.test("Base64Decoder round-trips random data split at every offset", () => {
  const data = Uint8Array.from({ length: 64 }, (_, i) => (i * 31 + 7) & 255);
  const text = encodeBase64(data);
  for (let cut = 0; cut <= text.length; cut++) {
    assert.deepEqual(decodeAll([text.slice(0, cut), text.slice(cut)]), [
      ...data,
    ]);
  }
});

Deno.test("Base64Decoder accepts padding between separately encoded frames", () => {
  const a = new Uint8Array([1]);
  const b = new Uint8Array([2, 3]);
  const c = new Uint8Array([4, 5, 6]);
  const text = encodeBase64(a) + encodeBase64(b) + encodeBase64(c);
  assert.match(text, /==.*=/);
  assert.deepEqual(decodeAll([text]), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(decodeAll([...text]), [1, 2, 3, 4, 5, 6]);
});

Deno.test("Base64Decoder.finish() accepts an unpadded tail of 2 or 3 chars", () => {
  assert.deepEqual(decodeAll(["AQ"]), [1]);
  assert.deepEqual(decodeAll(["AQI"]), [1, 2]);
});

Deno.test("Base64Decoder rejects characters outside the alphabet", () => {
  for (const bad of ["AA*A", "AA A", "AAA\n", "ü"]) {
    assert.throws(() => decodeAll([bad]), isBase64Error, bad);
  }
});

Deno.test("Base64Decoder rejects misplaced padding", () => {
  for (const bad of ["=AAA", "A===", "AA=A", "AA=", "A"]) {
    assert.throws(() => decodeAll([bad]), isBase64Error, bad);
  }
});
