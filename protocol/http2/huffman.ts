/**
 * The static Huffman code HPACK string literals may use (RFC 7541 §5.2 and
 * Appendix B).
 *
 * The code is canonical: codes of one length are consecutive and ordered by
 * symbol, and each length starts where the previous one ended, shifted. So
 * the appendix is kept here as its 257 bit lengths only, and every code is
 * derived from them at module load; a mistyped length breaks the Kraft sum
 * and the known codes the tests check.
 *
 * Decoding runs a byte-at-a-time state machine: the states are the 256
 * internal nodes of the code tree, and one table entry per (state, input
 * byte) gives the next state, the zero to two symbols completed on the way
 * and whether EOS was hit. The 256 KiB table is filled entry by entry on
 * first use from a small 4-bit table built at load.
 *
 * Strings are octets mapped one to one onto char codes 0-255 (latin1), which
 * is what HTTP/2 field values are; nothing here UTF-8 decodes.
 *
 * @module
 */

/**
 * A malformed header block, or a header the encoder cannot represent.
 *
 * In HTTP/2 terms every decoding failure is a connection error of type
 * COMPRESSION_ERROR: the peer's dynamic table and ours may now disagree, so
 * no later header block on the connection can be trusted.
 */
export class HpackError extends Error {
  override readonly name = "HpackError";
}

/** Code lengths of symbols 0-255 and EOS (256), 16 per row, from Appendix B. */
const LENGTHS = [
  "13 23 28 28 28 28 28 28 28 24 30 28 28 30 28 28",
  "28 28 28 28 28 28 30 28 28 28 28 28 28 28 28 28",
  "6 10 10 12 13 6 8 11 10 10 8 11 8 6 6 6",
  "5 5 5 6 6 6 6 6 6 6 7 8 15 6 12 10",
  "13 6 7 7 7 7 7 7 7 7 7 7 7 7 7 7",
  "7 7 7 7 7 7 7 7 8 7 8 13 19 13 14 6",
  "15 5 6 5 6 5 6 6 6 5 7 7 6 6 6 5",
  "6 7 6 5 5 6 7 7 7 7 7 15 11 14 13 28",
  "20 22 20 20 22 22 22 23 22 23 23 23 23 23 24 23",
  "24 24 22 23 24 23 23 23 23 21 22 23 22 23 23 24",
  "22 21 20 22 22 23 23 21 23 22 22 24 21 22 23 23",
  "21 21 22 21 23 22 23 23 20 22 22 22 23 22 22 23",
  "26 26 20 19 22 23 22 25 26 26 26 27 27 26 24 25",
  "19 21 26 27 27 26 27 24 21 21 26 26 28 27 27 27",
  "20 24 20 21 22 21 21 23 22 22 25 25 24 24 26 23",
  "26 27 26 26 27 27 27 27 27 28 27 27 27 27 27 26",
  "30",
].join(" ").split(" ").map(Number);

/** The end-of-string symbol; never valid inside a string. */
const EOS = 256;

/** Bit length of each symbol's code, indexed by symbol. */
export const HUFFMAN_LENGTHS: Uint8Array = Uint8Array.from(LENGTHS);

/** Each symbol's code, right-aligned in its bit length. */
export const HUFFMAN_CODES: Uint32Array = canonicalCodes(HUFFMAN_LENGTHS);

function canonicalCodes(lengths: Uint8Array): Uint32Array {
  const order = Array.from(lengths.keys()).sort((a, b) =>
    lengths[a] - lengths[b] || a - b
  );
  const codes = new Uint32Array(lengths.length);
  let code = 0;
  let len = lengths[order[0]];
  for (const sym of order) {
    code *= 2 ** (lengths[sym] - len);
    len = lengths[sym];
    codes[sym] = code++;
  }
  return codes;
}

/**
 * Number of octets {@linkcode huffmanEncode} produces for `bytes`, for
 * choosing between the Huffman and the raw form before writing either.
 */
export function huffmanEncodedLength(bytes: Uint8Array): number {
  let bits = 0;
  for (let i = 0; i < bytes.length; i++) bits += HUFFMAN_LENGTHS[bytes[i]];
  return (bits + 7) >>> 3;
}

/**
 * Like {@linkcode huffmanEncodedLength} for a latin1 string (char codes are
 * the octets); -1 if a char code is above 255, which no octet string has.
 */
export function huffmanStringLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) return -1;
    bits += HUFFMAN_LENGTHS[c];
  }
  return (bits + 7) >>> 3;
}

/** Huffman-codes `bytes`, padding the last octet with the EOS prefix (1s). */
export function huffmanEncode(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(huffmanEncodedLength(bytes));
  // Octets are latin1 char codes, so the string encoder does the work.
  huffmanEncodeStringInto(latin1(bytes, 0, bytes.length), out, 0);
  return out;
}

/**
 * Writes the Huffman code of latin1 string `s` into `out` at `pos` and
 * returns the position after it. The caller has checked the char codes
 * and the room with {@linkcode huffmanStringLength}.
 */
export function huffmanEncodeStringInto(
  s: string,
  out: Uint8Array,
  pos: number,
): number {
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i);
    let len = HUFFMAN_LENGTHS[sym];
    const code = HUFFMAN_CODES[sym];
    if (len > 24) {
      acc = (acc << (len - 16)) | (code >>> 16);
      bits += len - 16;
      while (bits >= 8) out[pos++] = acc >>> (bits -= 8);
      len = 16;
    }
    acc = ((acc << len) | (code & ((1 << len) - 1))) & 0x7fffffff;
    bits += len;
    while (bits >= 8) out[pos++] = acc >>> (bits -= 8);
  }
  if (bits > 0) out[pos++] = (acc << (8 - bits)) | (0xff >>> bits);
  return pos;
}

// Decoder table entry layout (one Uint32 per state x input byte).
const NEXT_MASK = 0xff;
const COUNT_SHIFT = 8;
/** EOS was reached: the string is malformed. */
const FAIL = 1 << 10;
/** Entry not computed yet; see {@linkcode byteEntry}. */
const LAZY = 1 << 11;
const SYM1_SHIFT = 16;
const SYM2_SHIFT = 24;

/** States where the input may end: the root, or 1-7 bits into EOS's code. */
const accepting = new Uint8Array(256);
/** Transitions per (state, 4-bit nibble): at most one symbol each. */
const nibbles = buildNibbles();
/**
 * Transitions per (state, byte), filled on first use from two nibble steps:
 * computing all 65536 up front costs 5-8 ms of still-unoptimized code, and
 * real traffic touches a few hundred. LAZY shares the hot loop's FAIL test.
 */
const transitions = new Uint32Array(256 * 256).fill(LAZY);

function buildNibbles(): Uint32Array {
  // Internal nodes are 0..255 (root 0); a child < 0 is the leaf -(sym + 1).
  const child = new Int32Array(512);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const len = HUFFMAN_LENGTHS[sym];
    const code = HUFFMAN_CODES[sym];
    let node = 0;
    for (let b = len - 1; b > 0; b--) {
      const slot = node * 2 + ((code >>> b) & 1);
      if (child[slot] === 0) child[slot] = nodes++;
      node = child[slot];
    }
    child[node * 2 + (code & 1)] = -(sym + 1);
  }
  accepting[0] = 1;
  for (let node = 0, depth = 1; depth <= 7; depth++) {
    node = child[node * 2 + 1];
    accepting[node] = 1;
  }
  const table = new Uint32Array(256 * 16);
  for (let state = 0; state < 256; state++) {
    for (let bits = 0; bits < 16; bits++) {
      let node = state;
      let entry = 0;
      for (let b = 3; b >= 0; b--) {
        const next = child[node * 2 + ((bits >>> b) & 1)];
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -next - 1;
        node = 0;
        if (sym === EOS) {
          entry = FAIL;
          break;
        }
        entry = (sym << SYM1_SHIFT) | (1 << COUNT_SHIFT);
      }
      table[state * 16 + bits] = entry | node;
    }
  }
  return table;
}

/** Computes and stores the (state, byte) transition. */
function byteEntry(index: number): number {
  const hi = nibbles[(index >>> 8) * 16 + ((index >>> 4) & 15)];
  const lo = (hi & FAIL) === 0
    ? nibbles[(hi & NEXT_MASK) * 16 + (index & 15)]
    : FAIL;
  let entry: number;
  if ((lo & FAIL) !== 0) {
    entry = FAIL;
  } else if ((hi >>> COUNT_SHIFT & 3) === 0) {
    entry = lo;
  } else {
    entry = (hi & (0xff << SYM1_SHIFT)) | (lo & NEXT_MASK) |
      ((1 + (lo >>> COUNT_SHIFT & 3)) << COUNT_SHIFT) |
      (((lo >>> SYM1_SHIFT) & 0xff) << SYM2_SHIFT);
  }
  return transitions[index] = entry >>> 0;
}

let scratch = new Uint8Array(256);

/**
 * Decodes Huffman-coded `bytes[start..end)` into a latin1 string.
 *
 * @throws {HpackError} for EOS inside the string, padding longer than 7
 * bits, or padding that is not the all-ones prefix of EOS (RFC 7541 §5.2).
 */
export function huffmanDecodeString(
  bytes: Uint8Array,
  start: number,
  end: number,
): string {
  const n = huffmanDecodeToScratch(bytes, start, end);
  return latin1(scratch, 0, n);
}

/** Decodes a whole Huffman-coded string to octets; see {@linkcode huffmanDecodeString}. */
export function huffmanDecode(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  // Decode first: it may replace the scratch buffer with a larger one.
  const n = huffmanDecodeToScratch(bytes, 0, bytes.length);
  return scratch.slice(0, n);
}

function huffmanDecodeToScratch(
  bytes: Uint8Array,
  start: number,
  end: number,
): number {
  // One input byte completes at most two symbols (the shortest code is 5).
  if (scratch.length < (end - start) * 2) {
    scratch = new Uint8Array((end - start) * 2);
  }
  const out = scratch;
  let state = 0;
  let o = 0;
  for (let i = start; i < end; i++) {
    const index = (state << 8) | bytes[i];
    let e = transitions[index];
    if ((e & (FAIL | LAZY)) !== 0) {
      if ((e & LAZY) !== 0) e = byteEntry(index);
      if ((e & FAIL) !== 0) throw new HpackError("Huffman string contains EOS");
    }
    const count = (e >>> COUNT_SHIFT) & 3;
    if (count !== 0) {
      out[o++] = e >>> SYM1_SHIFT;
      if (count === 2) out[o++] = e >>> SYM2_SHIFT;
    }
    state = e & NEXT_MASK;
  }
  if (accepting[state] === 0) {
    throw new HpackError("Huffman string has invalid padding");
  }
  return o;
}

// latin1() scratch: one reusable array per short length, since
// String.fromCharCode.apply reads a whole array (measured on Deno 2.9: 35 ns
// for 12 octets, against 41 ns with a fresh array, 68 ns appending char by
// char and 310 ns with TextDecoder).
const SHORT = 64;
const shortArrays: number[][] = Array.from(
  { length: SHORT + 1 },
  (_, n) => new Array<number>(n).fill(0),
);
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Maps octets `bytes[start..end)` one to one onto a string of char codes
 * 0-255. (TextDecoder("latin1") is windows-1252 and remaps 0x80-0x9f, so it
 * is not this; the UTF-8 decoder is, for ASCII, and is the fastest way for
 * long strings.)
 */
export function latin1(bytes: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n <= SHORT) {
    const codes = shortArrays[n];
    for (let i = 0; i < n; i++) codes[i] = bytes[start + i];
    return String.fromCharCode.apply(null, codes);
  }
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (bytes[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return utf8.decode(bytes.subarray(start, end));
  let s = "";
  for (let i = start; i < end; i += 4096) {
    const stop = Math.min(i + 4096, end);
    const codes = new Array<number>(stop - i);
    for (let j = i; j < stop; j++) codes[j - i] = bytes[j];
    s += String.fromCharCode.apply(null, codes);
  }
  return s;
}
