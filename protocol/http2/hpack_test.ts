/**
 * HPACK: the RFC 7541 Appendix C examples, every rejection the decoder owes
 * a hostile peer, and encoder round trips.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ascii, hex, prng } from "./_test_utils.ts";
import {
  type HeaderField,
  HpackDecoder,
  HpackEncoder,
  HpackError,
} from "./hpack.ts";

Deno.test("HpackDecoder decodes the C.2 representation examples", () => {
  let d = new HpackDecoder();
  assert.deepEqual(
    d.decode(
      hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
    ),
    [["custom-key", "custom-header"]],
  );
  assert.deepEqual(d.tableEntries(), [["custom-key", "custom-header"]]);
  assert.equal(d.tableSize, 55);

  d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [
    [":path", "/sample/path"],
  ]);
  assert.equal(d.tableSize, 0);

  d = new HpackDecoder();
  assert.deepEqual(
    d.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")),
    [["password", "secret"]],
  );
  assert.equal(d.tableSize, 0);

  d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("82")), [[":method", "GET"]]);
  assert.equal(d.tableSize, 0);
});

interface Step {
  block: string;
  fields: HeaderField[];
  table: HeaderField[];
  size: number;
}

function runSteps(tableSize: number, steps: Step[]) {
  const d = new HpackDecoder(tableSize);
  for (const [i, step] of steps.entries()) {
    assert.deepEqual(d.decode(hex(step.block)), step.fields, `block ${i + 1}`);
    assert.deepEqual(d.tableEntries(), step.table, `table ${i + 1}`);
    assert.equal(d.tableSize, step.size, `size ${i + 1}`);
  }
}

const REQ1: HeaderField[] = [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", "/"],
  [":authority", "www.example.com"],
];
const REQ2: HeaderField[] = [...REQ1, ["cache-control", "no-cache"]];
const REQ3: HeaderField[] = [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", "/index.html"],
  [":authority", "www.example.com"],
  ["custom-key", "custom-value"],
];
const REQ_TABLES: HeaderField[][] = [
  [[":authority", "www.example.com"]],
  [["cache-control", "no-cache"], [":authority", "www.example.com"]],
  [
    ["custom-key", "custom-value"],
    ["cache-control", "no-cache"],
    [":authority", "www.example.com"],
  ],
];

Deno.test("HpackDecoder decodes the C.3 requests and keeps the table", () => {
  runSteps(4096, [
    {
      block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      fields: REQ1,
      table: REQ_TABLES[0],
      size: 57,
    },
    {
      block: "8286 84be 5808 6e6f 2d63 6163 6865",
      fields: REQ2,
      table: REQ_TABLES[1],
      size: 110,
    },
    {
      block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 " +
        "0c63 7573 746f 6d2d 7661 6c75 65",
      fields: REQ3,
      table: REQ_TABLES[2],
      size: 164,
    },
  ]);
});

Deno.test("HpackDecoder hands out a table entry's own pair for an indexed field", () => {
  const decoder = new HpackDecoder(4096);
  const first = decoder.decode(
    hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"),
  );
  const second = decoder.decode(hex("8286 84be 5808 6e6f 2d63 6163 6865"));
  assert.deepEqual(second, REQ2);
  // Static (:method, :scheme, :path) and dynamic (:authority) entries.
  for (let i = 0; i < 4; i++) assert.equal(second[i], first[i], `field ${i}`);
  assert.equal(second[3], decoder.tableEntries()[1]);
  // A literal is a pair of its own, and the one the table keeps.
  assert.equal(second[4], decoder.tableEntries()[0]);
});

Deno.test("HpackDecoder decodes the C.4 requests with Huffman strings", () => {
  runSteps(4096, [
    {
      block: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      fields: REQ1,
      table: REQ_TABLES[0],
      size: 57,
    },
    {
      block: "8286 84be 5886 a8eb 1064 9cbf",
      fields: REQ2,
      table: REQ_TABLES[1],
      size: 110,
    },
    {
      block: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
      fields: REQ3,
      table: REQ_TABLES[2],
      size: 164,
    },
  ]);
});

const DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOC = "https://www.example.com";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const RES: HeaderField[][] = [
  [
    [":status", "302"],
    ["cache-control", "private"],
    ["date", DATE1],
    ["location", LOC],
  ],
  [
    [":status", "307"],
    ["cache-control", "private"],
    ["date", DATE1],
    ["location", LOC],
  ],
  [
    [":status", "200"],
    ["cache-control", "private"],
    ["date", DATE2],
    ["location", LOC],
    ["content-encoding", "gzip"],
    ["set-cookie", COOKIE],
  ],
];
const RES_TABLES: HeaderField[][] = [
  [
    ["location", LOC],
    ["date", DATE1],
    ["cache-control", "private"],
    [":status", "302"],
  ],
  [
    [":status", "307"],
    ["location", LOC],
    ["date", DATE1],
    ["cache-control", "private"],
  ],
  [["set-cookie", COOKIE], ["content-encoding", "gzip"], ["date", DATE2]],
];

Deno.test("HpackDecoder decodes the C.5 responses with evictions at 256", () => {
  runSteps(256, [
    {
      block: "4803 3330 3258 0770 7269 7661 7465 611d " +
        "4d6f 6e2c 2032 3120 4f63 7420 3230 3133 " +
        "2032 303a 3133 3a32 3120 474d 546e 1768 " +
        "7474 7073 3a2f 2f77 7777 2e65 7861 6d70 " +
        "6c65 2e63 6f6d",
      fields: RES[0],
      table: RES_TABLES[0],
      size: 222,
    },
    {
      block: "4803 3330 37c1 c0bf",
      fields: RES[1],
      table: RES_TABLES[1],
      size: 222,
    },
    {
      block: "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 " +
        "3230 3133 2032 303a 3133 3a32 3220 474d " +
        "54c0 5a04 677a 6970 7738 666f 6f3d 4153 " +
        "444a 4b48 514b 425a 584f 5157 454f 5049 " +
        "5541 5851 5745 4f49 553b 206d 6178 2d61 " +
        "6765 3d33 3630 303b 2076 6572 7369 6f6e " +
        "3d31",
      fields: RES[2],
      table: RES_TABLES[2],
      size: 215,
    },
  ]);
});

Deno.test("HpackDecoder decodes the C.6 Huffman responses with evictions at 256", () => {
  runSteps(256, [
    {
      block: "4882 6402 5885 aec3 771a 4b61 96d0 7abe " +
        "9410 54d4 44a8 2005 9504 0b81 66e0 82a6 " +
        "2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 " +
        "e9ae 82ae 43d3",
      fields: RES[0],
      table: RES_TABLES[0],
      size: 222,
    },
    {
      block: "4883 640e ffc1 c0bf",
      fields: RES[1],
      table: RES_TABLES[1],
      size: 222,
    },
    {
      block: "88c1 6196 d07a be94 1054 d444 a820 0595 " +
        "040b 8166 e084 a62d 1bff c05a 839b d9ab " +
        "77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b " +
        "3960 d5af 2708 7f36 72c1 ab27 0fb5 291f " +
        "9587 3160 65c0 03ed 4ee5 b106 3d50 07",
      fields: RES[2],
      table: RES_TABLES[2],
      size: 215,
    },
  ]);
});

// ------------------------------------------------------------- Table rules

Deno.test("HpackDecoder applies size updates at the start of a block", () => {
  const d = new HpackDecoder(4096);
  d.decode(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"));
  assert.equal(d.tableSize, 57);
  // Two updates (0, then 4096 as 31 + 4065): table emptied, then regrown.
  assert.deepEqual(d.decode(hex("20 3f e1 1f 82")), [[":method", "GET"]]);
  assert.equal(d.tableSize, 0);
  assert.equal(d.tableCapacity, 4096);
  // Shrinking to 60 keeps just one 57-octet entry.
  d.decode(hex("41 0f 7777 772e 6578 616d 706c 652e 636f 6d"));
  d.decode(hex("41 0f 7777 772e 6578 616d 706c 652e 636f 6d"));
  assert.equal(d.tableSize, 114);
  d.decode(hex("3f 1d"));
  assert.equal(d.tableCapacity, 60);
  assert.deepEqual(d.tableEntries(), [[":authority", "www.example.com"]]);
});

Deno.test("HpackDecoder empties the table for an entry larger than it", () => {
  const d = new HpackDecoder(64);
  d.decode(hex("41 03 616263")); // :authority abc, 45 octets
  assert.equal(d.tableSize, 45);
  const big = "x".repeat(40);
  const block = new Uint8Array([0x41, 40, ...ascii(big)]);
  assert.deepEqual(d.decode(block), [[":authority", big]]);
  assert.equal(d.tableSize, 0);
  assert.deepEqual(d.tableEntries(), []);
});

Deno.test("HpackDecoder keeps the ring in order through many evictions", () => {
  const d = new HpackDecoder(200);
  const enc = (i: number) =>
    new Uint8Array([
      0x40,
      0x02,
      ...ascii(`k${i % 10}`),
      0x03,
      ...ascii(`${100 + i}`),
    ]);
  for (let i = 0; i < 50; i++) {
    d.decode(enc(i));
    // Each entry is 2 + 3 + 32 = 37 octets: five fit in 200.
    const expect: HeaderField[] = [];
    for (let j = i; j >= 0 && j > i - 5; j--) {
      expect.push([`k${j % 10}`, `${100 + j}`]);
    }
    assert.deepEqual(d.tableEntries(), expect);
    assert.equal(d.tableSize, 37 * expect.length);
    // Index 62 is the newest, 62 + n - 1 the oldest.
    assert.deepEqual(d.decode(new Uint8Array([0x80 | 62])), [expect[0]]);
    assert.deepEqual(
      d.decode(new Uint8Array([0x80 | (61 + expect.length)])),
      [expect[expect.length - 1]],
    );
  }
});

// ------------------------------------------------------------- Rejections

function rejects(block: string | Uint8Array, d = new HpackDecoder()) {
  const bytes = typeof block === "string" ? hex(block) : block;
  assert.throws(() => d.decode(bytes), HpackError, String(block));
}

Deno.test("HpackDecoder rejects index 0 and indexes beyond the table", () => {
  rejects("80"); // indexed field, index 0
  rejects("be"); // 62 with an empty dynamic table
  rejects("bf 01"); // 64
  rejects("ff 80 01"); // 127 + 128
  rejects("7e 01 61"); // literal name index 62, empty table
  rejects("0f 2f 01 61"); // name index 15 + 47 = 62
  const d = new HpackDecoder();
  d.decode(hex("41 01 61"));
  assert.deepEqual(d.decode(hex("be")), [[":authority", "a"]]);
  rejects("bf", d);
});

Deno.test("HpackDecoder rejects integers above 2^31 - 1 and truncated ones", () => {
  rejects("ff"); // continuation missing
  rejects("ff 80"); // continuation says more follows
  rejects("ff ff ff ff ff 0f"); // 127 + 2^35-ish
  rejects("ff 80 80 80 80 80 80 01"); // too many continuation octets
  rejects("3f ff ff ff ff 07"); // size update far above 2^31
  // Large but in range is only an index error, not an integer error.
  assert.throws(
    () => new HpackDecoder().decode(hex("ff ff ff ff 07")),
    (e: Error) => e instanceof HpackError && /index/.test(e.message),
  );
});

Deno.test("HpackDecoder rejects strings that run past the block", () => {
  rejects("40 05 61"); // name of 5 with 1 octet
  rejects("40 01 61 03 6263"); // value of 3 with 2 octets
  rejects("04"); // :path with no value
  rejects("40"); // new name with nothing after
  rejects("40 01 61"); // value missing
  rejects("40 7f"); // name length missing its continuation
  rejects("04 ff ff ff ff 07"); // value length 2^31 - 1 + 127 overflows
});

Deno.test("HpackDecoder rejects bad Huffman strings in a block", () => {
  rejects("40 81 00 01 61"); // name with 0-padding
  rejects("40 01 61 84 ffff ffff"); // value with EOS
  rejects("04 82 07 ff"); // value with 11 bits of padding
});

Deno.test("HpackDecoder rejects size updates above our maximum or after a field", () => {
  rejects("3f e2 1f"); // 4097 > 4096
  rejects(hex("3f e2 1f"), new HpackDecoder(4096));
  rejects("3f 02", new HpackDecoder(32)); // 33 > 32
  rejects("82 20"); // after a field
  rejects("20 82 20"); // after a field, even with one at the start
  assert.deepEqual(new HpackDecoder(32).decode(hex("3f 01 82")), [[
    ":method",
    "GET",
  ]]);
});

Deno.test("HpackDecoder decodes a header list above maxHeaderListSize whole but keeps only the fields within it", () => {
  const small = new HpackDecoder(4096, { maxHeaderListSize: 100 });
  assert.equal(small.maxHeaderListSize, 100);
  assert.deepEqual(small.decode(hex("82 82")), [
    [":method", "GET"],
    [":method", "GET"],
  ]); // 84
  assert.equal(small.lastListSize, 84);
  // 126 octets: the third field is counted and dropped; not an error.
  assert.deepEqual(small.decode(hex("82 82 82")), [
    [":method", "GET"],
    [":method", "GET"],
  ]);
  assert.equal(small.lastListSize, 126);
  // A field past the limit still enters the table (the peer's encoder
  // added it), and the next block may refer to it.
  assert.equal(
    small.decode(hex("82 82 82 40 01 78 01 79")).length,
    2,
  );
  assert.deepEqual(small.tableEntries(), [["x", "y"]]);
  assert.deepEqual(small.decode(hex("be")), [["x", "y"]]);
  assert.equal(small.lastListSize, 34);
  // One 4000-octet entry indexed again and again: cheap for the peer to
  // send; counted but not kept past the default 64 KiB.
  const d = new HpackDecoder();
  const value = "v".repeat(4000);
  d.decode(new Uint8Array([...hex("41 7f a1 1e"), ...ascii(value)])); // 127 + 33 + 30 * 128
  assert.equal(d.tableEntries()[0][1], value);
  const kept = d.decode(new Uint8Array(20_000).fill(0xbe));
  assert.equal(kept.length, 16); // 16 × 4,042 ≤ 65,536 < 17 × 4,042
  assert.equal(d.lastListSize, 20_000 * 4042);
  // The decoder is not broken by it.
  assert.deepEqual(d.decode(hex("82")), [[":method", "GET"]]);
});

Deno.test("HpackDecoder refuses every block after a failure", () => {
  const d = new HpackDecoder();
  assert.throws(() => d.decode(hex("80")), HpackError);
  assert.throws(() => d.decode(hex("82")), HpackError);
});

Deno.test("HpackDecoder maps octets to char codes without UTF-8 decoding", () => {
  const d = new HpackDecoder();
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const block = new Uint8Array([0x00, 0x01, 0x78, 0x7f, 0x81, 0x01, ...bytes]);
  const [[name, value]] = d.decode(block);
  assert.equal(name, "x");
  assert.equal(value.length, 256);
  for (let i = 0; i < 256; i++) assert.equal(value.charCodeAt(i), i);
});

// ----------------------------------------------------------------- Encoder

Deno.test("HpackEncoder uses static full matches, static names and literals", () => {
  const e = new HpackEncoder();
  assert.deepEqual(e.encode([[":method", "POST"]]), hex("83"));
  assert.deepEqual(e.encode([[":scheme", "http"]]), hex("86"));
  assert.deepEqual(e.encode([[":authority", ""]]), hex("81"));
  assert.deepEqual(e.encode([[":status", "200"]]), hex("88"));
  // content-type is static 31: 4-bit prefix 15, then 16.
  const ct = e.encode([["content-type", "application/grpc"]]);
  assert.deepEqual(ct.subarray(0, 2), hex("0f 10"));
  assert.equal(ct[2] & 0x80, 0x80, "value Huffman-coded: shorter");
  // A new name: 0x00, then name and value strings.
  const custom = e.encode([["x-user", "ann"]]);
  assert.equal(custom[0], 0x00);
  // Huffman only when shorter: these bytes have 20+ bit codes.
  const raw = e.encode([["x-bin", "\x80\x81\x82"]]);
  assert.deepEqual(raw.subarray(raw.length - 4), hex("03 80 81 82"));
  // The RFC's own example strings come out as in C.4.
  assert.deepEqual(
    e.encode([[":authority", "www.example.com"]]),
    hex("01 8c f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
  );
});

Deno.test("HpackEncoder output decodes back to the same fields", () => {
  const e = new HpackEncoder();
  const rand = prng(42);
  const long = "a".repeat(127) + "b".repeat(200);
  const bin = Array.from(
    { length: 300 },
    () => String.fromCharCode(rand() & 0xff),
  )
    .join("");
  const fields: HeaderField[] = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/chat.ChatService/SendMessage"],
    [":authority", "127.0.0.1:50051"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ["grpc-timeout", "5S"],
    ["x-empty", ""],
    ["", ""],
    ["accept-encoding", "gzip, deflate"],
    ["accept-encoding", "identity"],
    ["x-long", long],
    ["x-long-name-".padEnd(200, "n"), "v"],
    ["x-trace-bin", btoa(bin)],
    ["x-latin1", bin],
  ];
  const block = e.encode(fields);
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(block), fields);
  assert.equal(d.tableSize, 0, "the encoder never indexes");
  // The same encoder again: stateless, same bytes.
  assert.deepEqual(e.encode(fields), block);
  // Many fields to grow the internal buffer.
  const many: HeaderField[] = Array.from(
    { length: 400 },
    (_, i) => [`x-h${i}`, long],
  );
  assert.deepEqual(
    new HpackDecoder(4096, { maxHeaderListSize: 1 << 20 }).decode(
      e.encode(many),
    ),
    many,
  );
  assert.deepEqual(e.encode([]), new Uint8Array(0));
});

Deno.test("HpackEncoder stays correct while its literal cache churns", () => {
  const e = new HpackEncoder();
  const d = new HpackDecoder(4096, { maxHeaderListSize: 1 << 20 });
  for (let round = 0; round < 3; round++) {
    const fields: HeaderField[] = Array.from(
      { length: 700 },
      (_, i) => [`x-k${i % 37}`, `value-${(i * 7919) % 1300}`],
    );
    assert.deepEqual(d.decode(e.encode(fields)), fields);
  }
});

Deno.test("HpackEncoder rejects char codes above 255", () => {
  const e = new HpackEncoder();
  assert.throws(() => e.encode([["x-name", "caf\u00e9 \u20ac"]]), HpackError);
  assert.throws(() => e.encode([["x-\u0100", "v"]]), HpackError);
  // é (0xe9) alone is latin1 and fine.
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(e.encode([["x-name", "caf\u00e9"]])), [[
    "x-name",
    "caf\u00e9",
  ]]);
});

// --------------------------------------------------------- A real HTTP/2 peer

const GRPC_HEADERS: HeaderField[] = [
  [":status", "200"],
  ["content-type", "application/grpc+proto"],
  ["grpc-accept-encoding", "identity,deflate,gzip"],
  ["grpc-encoding", "identity"],
];
const GRPC_TRAILERS: HeaderField[] = [
  ["grpc-status", "0"],
  ["grpc-message", "OK"],
];

Deno.test("HpackEncoder.encodeConstant indexes a constant block after its first use", () => {
  const e = new HpackEncoder({ tableSize: 1024 });
  const d = new HpackDecoder();
  const headers = {}, trailers = {};
  const first = e.encodeConstant(headers, () => GRPC_HEADERS);
  assert.deepEqual(d.decode(first), GRPC_HEADERS);
  assert.equal(d.tableSize, 3 * 32 + 12 + 22 + 20 + 21 + 13 + 8);
  const second = e.encodeConstant(headers, () => GRPC_HEADERS);
  // :status 200 is static (0x88); the other three are dynamic 62..64.
  assert.deepEqual([...second], [0x88, 0x80 | 64, 0x80 | 63, 0x80 | 62]);
  assert.deepEqual(d.decode(second), GRPC_HEADERS);
  // Cached: the very same bytes, and the fields are not asked for again.
  assert.equal(
    e.encodeConstant(headers, () => assert.fail("cached")),
    second,
  );
  // A second constant inserts in front: the first's indexes shift by two,
  // and its cached block is encoded again.
  assert.deepEqual(
    d.decode(e.encodeConstant(trailers, () => GRPC_TRAILERS)),
    GRPC_TRAILERS,
  );
  const shifted = e.encodeConstant(headers, () => GRPC_HEADERS);
  assert.deepEqual([...shifted], [0x88, 0x80 | 66, 0x80 | 65, 0x80 | 64]);
  assert.deepEqual(d.decode(shifted), GRPC_HEADERS);
  const t = e.encodeConstant(trailers, () => GRPC_TRAILERS);
  assert.deepEqual([...t], [0x80 | 63, 0x80 | 62]);
  assert.deepEqual(d.decode(t), GRPC_TRAILERS);
  // encode() in between neither inserts nor disturbs the indexes.
  const other: HeaderField[] = [["grpc-status", "13"], ["grpc-message", "x"]];
  assert.deepEqual(d.decode(e.encode(other)), other);
  assert.equal(e.encodeConstant(trailers, () => GRPC_TRAILERS), t);
  assert.deepEqual(d.decode(t), GRPC_TRAILERS);
});

Deno.test("HpackEncoder.encodeConstant stays within its table size", () => {
  // Room for content-type's entry (66 octets) only.
  const e = new HpackEncoder({ tableSize: 100 });
  const d = new HpackDecoder();
  const key = {};
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(d.decode(e.encodeConstant(key, () => GRPC_HEADERS)), [
      ...GRPC_HEADERS,
    ]);
  }
  assert.equal(d.tableSize, 32 + 12 + 22);
  // Without a table size it is encode(): nothing enters the table.
  const plain = new HpackEncoder();
  const block = plain.encodeConstant(key, () => GRPC_HEADERS);
  assert.deepEqual(block, plain.encode(GRPC_HEADERS));
  plain.setPeerTableSize(0);
  assert.deepEqual(plain.encode(GRPC_HEADERS), block, "no size update");
});

Deno.test("HpackEncoder follows the peer's SETTINGS_HEADER_TABLE_SIZE", () => {
  const e = new HpackEncoder({ tableSize: 1024 });
  const d = new HpackDecoder();
  const headers = {}, trailers = {};
  d.decode(e.encodeConstant(headers, () => GRPC_HEADERS));
  d.decode(e.encodeConstant(trailers, () => GRPC_TRAILERS));
  const used = d.tableSize;
  // Larger than what we use, or than 4096: nothing to say.
  e.setPeerTableSize(8192);
  assert.deepEqual(
    [...e.encodeConstant(headers, () => GRPC_HEADERS)],
    [0x88, 0x80 | 66, 0x80 | 65, 0x80 | 64],
  );
  // Below 4096 but above our use: one size update, the table stays.
  e.setPeerTableSize(2000);
  const updated = e.encodeConstant(headers, () => GRPC_HEADERS);
  assert.equal(updated[0] & 0xe0, 0x20, "starts with a size update");
  assert.deepEqual(d.decode(updated), GRPC_HEADERS);
  assert.equal(d.tableSize, used);
  // Below our use: emptied (update to 0, then the new size), filled again.
  e.setPeerTableSize(100);
  const emptied = e.encode([["x-a", "b"]]);
  assert.deepEqual([...emptied.subarray(0, 3)], [0x20, 0x3f, 100 - 31]);
  assert.deepEqual(d.decode(emptied), [["x-a", "b"]]);
  assert.equal(d.tableSize, 0);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(
      d.decode(e.encodeConstant(trailers, () => GRPC_TRAILERS)),
      GRPC_TRAILERS,
    );
    assert.deepEqual(
      d.decode(e.encodeConstant(headers, () => GRPC_HEADERS)),
      GRPC_HEADERS,
    );
  }
  assert.ok(d.tableSize <= 100);
  // Zero: nothing is indexed any more, and every block still decodes.
  e.setPeerTableSize(0);
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(
      d.decode(e.encodeConstant(headers, () => GRPC_HEADERS)),
      GRPC_HEADERS,
    );
  }
  assert.equal(d.tableSize, 0);
});

Deno.test("HpackEncoder.encodeConstant decodes right in any order of keys and settings", () => {
  const rand = prng(7);
  const keys = Array.from({ length: 6 }, () => ({}));
  const lists: HeaderField[][] = keys.map((_, k) =>
    Array.from(
      { length: 1 + k },
      (_, i) => [`x-h${(k * 3 + i) % 7}`, `v${k}-${i}`] as HeaderField,
    )
  );
  const e = new HpackEncoder({ tableSize: 300 });
  const d = new HpackDecoder();
  for (let step = 0; step < 2000; step++) {
    const r = rand() % 100;
    if (r < 3) e.setPeerTableSize([0, 64, 150, 4096, 300][rand() % 5]);
    else if (r < 10) {
      const fields: HeaderField[] = [["x-free", String(step)]];
      assert.deepEqual(d.decode(e.encode(fields)), fields);
    } else {
      const k = rand() % keys.length;
      assert.deepEqual(
        d.decode(e.encodeConstant(keys[k], () => lists[k])),
        lists[k],
        `step ${step}`,
      );
    }
    assert.ok(d.tableSize <= 300);
  }
});
