/**
 * The Huffman code of HPACK (RFC 7541 Appendix B): the table, the C.4 and
 * C.6 strings, round trips and the rejections.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ascii, hex, prng } from "./_test_utils.ts";
import { HpackError } from "./hpack.ts";
import {
  HUFFMAN_CODES,
  HUFFMAN_LENGTHS,
  huffmanDecode,
  huffmanEncode,
  huffmanEncodedLength,
} from "./huffman.ts";

// ---------------------------------------------------------------- Huffman

Deno.test("HUFFMAN_CODES is a complete prefix code matching Appendix B", () => {
  let kraft = 0;
  for (const len of HUFFMAN_LENGTHS) kraft += 2 ** -len;
  assert.equal(kraft, 1);
  // Spot checks at every length group, from the appendix.
  const known: [number, number, number][] = [
    [0, 0x1ff8, 13],
    [1, 0x7fffd8, 23],
    [9, 0xffffea, 24],
    [10, 0x3ffffffc, 30],
    [32, 0x14, 6],
    [48, 0x0, 5],
    [58, 0x5c, 7],
    [59, 0xfb, 8],
    [63, 0x3fc, 10],
    [39, 0x7fa, 11],
    [35, 0xffa, 12],
    [125, 0x3ffd, 14],
    [123, 0x7ffe, 15],
    [92, 0x7fff0, 19],
    [128, 0xfffe6, 20],
    [153, 0x1fffdc, 21],
    [129, 0x3fffd2, 22],
    [199, 0x1ffffec, 25],
    [192, 0x3ffffe0, 26],
    [203, 0x7ffffde, 27],
    [127, 0xffffffc, 28],
    [249, 0xffffffe, 28],
    [255, 0x3ffffee, 26],
    [256, 0x3fffffff, 30],
  ];
  for (const [sym, code, len] of known) {
    assert.equal(HUFFMAN_LENGTHS[sym], len, `length of ${sym}`);
    assert.equal(HUFFMAN_CODES[sym], code, `code of ${sym}`);
  }
});

Deno.test("huffmanEncode() matches the RFC 7541 C.4 and C.6 strings", () => {
  const cases: [string, string][] = [
    ["www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"],
    ["no-cache", "a8eb 1064 9cbf"],
    ["custom-key", "25a8 49e9 5ba9 7d7f"],
    ["custom-value", "25a8 49e9 5bb8 e8b4 bf"],
    ["302", "6402"],
    ["private", "aec3 771a 4b"],
    [
      "Mon, 21 Oct 2013 20:13:21 GMT",
      "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
    ],
    ["https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"],
    ["307", "640e ff"],
    ["gzip", "9bd9 ab"],
  ];
  for (const [text, coded] of cases) {
    assert.deepEqual(huffmanEncode(ascii(text)), hex(coded), text);
    assert.equal(huffmanEncodedLength(ascii(text)), hex(coded).length);
    assert.deepEqual(huffmanDecode(hex(coded)), ascii(text), text);
  }
});

Deno.test("huffmanDecode() round-trips every byte value and random strings", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(huffmanDecode(huffmanEncode(all)), all);
  for (let b = 0; b < 256; b++) {
    const one = Uint8Array.of(b);
    assert.deepEqual(huffmanDecode(huffmanEncode(one)), one, `byte ${b}`);
    const run = new Uint8Array(9).fill(b);
    assert.deepEqual(huffmanDecode(huffmanEncode(run)), run, `run of ${b}`);
  }
  const rand = prng(7541);
  for (let n = 0; n < 500; n++) {
    const ascii = n % 2 === 0;
    const bytes = Uint8Array.from(
      { length: rand() % 300 },
      () => ascii ? 32 + rand() % 95 : rand() & 0xff,
    );
    const coded = huffmanEncode(bytes);
    assert.equal(coded.length, huffmanEncodedLength(bytes));
    assert.deepEqual(huffmanDecode(coded), bytes);
  }
  assert.deepEqual(huffmanDecode(new Uint8Array(0)), new Uint8Array(0));
});

Deno.test("huffmanDecode() round-trips every pair of byte values", () => {
  // Pairs reach every decoder state with every alignment of the next code.
  const pair = new Uint8Array(2);
  for (let a = 0; a < 256; a++) {
    for (let b = 0; b < 256; b++) {
      pair[0] = a;
      pair[1] = b;
      const back = huffmanDecode(huffmanEncode(pair));
      if (back.length !== 2 || back[0] !== a || back[1] !== b) {
        assert.fail(`pair ${a}, ${b} decoded as ${back}`);
      }
    }
  }
});

Deno.test("huffmanDecode() rejects EOS, long padding and padding with a 0", () => {
  // 32 ones: EOS (30) inside the string.
  assert.throws(() => huffmanDecode(hex("ffff ffff")), HpackError);
  // 'a' (00011) then EOS then padding.
  assert.throws(() => huffmanDecode(hex("1f ffff fff8")), HpackError);
  // '0' is 00000; with 111 padding it is fine.
  assert.deepEqual(huffmanDecode(hex("07")), ascii("0"));
  // Eight more ones: 11 bits of padding.
  assert.throws(() => huffmanDecode(hex("07 ff")), HpackError);
  // A whole octet of ones is padding longer than 7 bits.
  assert.throws(() => huffmanDecode(hex("ff")), HpackError);
  // Padding that is not all ones.
  assert.throws(() => huffmanDecode(hex("00")), HpackError);
  assert.throws(() => huffmanDecode(hex("06")), HpackError);
  assert.throws(() => huffmanDecode(hex("05")), HpackError);
});

// ------------------------------------------------------- Appendix C.2-C.6
