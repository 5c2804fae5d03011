/**
 * decodePost() (server/grpc/post_decoder.ts) agrees with protobuf-es's
 * fromBinary() on valid messages and rejects the malformed ones it rejects.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  MessageSchema,
  MessageType,
  SendMessageRequestSchema,
} from "../../gen/chat_pb.ts";
import {
  decodeChatPost,
  decodePost,
  decodePostHead,
  decodeSendRequest,
  type PostFields,
} from "./post_decoder.ts";

const fields = (
  m: {
    id: string;
    user: string;
    content: string;
    room: string;
    type: number;
    idempotencyKey?: string;
  },
) => ({
  id: m.id,
  user: m.user,
  content: m.content,
  room: m.room,
  type: m.type,
  hasContent: m.content.trim() !== "",
  key: m.idempotencyKey ?? "",
});

/** decodePostHead()'s part of fields(). */
const head = (m: PostFields) => {
  const { id: _id, content: _content, ...rest } = m;
  return rest;
};

Deno.test("decodePost() reads the same strings as fromBinary()", () => {
  const samples = [
    create(MessageSchema, {}),
    create(MessageSchema, { user: "ann", room: "r", content: "hi" }),
    create(MessageSchema, {
      id: "id-1",
      user: "Zoë 🚀",
      content: "x".repeat(5000) + "é",
      room: "général",
      timestamp: timestampFromMs(1_700_000_000_123),
      type: MessageType.LEAVE,
      offset: 12_345n,
      epoch: "0123456789abcdef",
    }),
  ];
  for (const m of samples) {
    const bytes = toBinary(MessageSchema, m);
    assert.deepEqual(
      decodePost(bytes),
      fields(fromBinary(MessageSchema, bytes)),
    );
  }
});

Deno.test("decodePost() skips unknown fields and keeps the last value of a repeated field", () => {
  const w = new BinaryWriter();
  w.tag(2, WireType.LengthDelimited).string("first");
  w.tag(99, WireType.Varint).uint64(12345n);
  w.tag(100, WireType.Bit64).fixed64(1n);
  w.tag(101, WireType.Bit32).fixed32(7);
  w.tag(102, WireType.LengthDelimited).bytes(new Uint8Array([1, 2, 3]));
  w.tag(2, WireType.LengthDelimited).string("last");
  w.tag(4, WireType.LengthDelimited).string("room");
  const bytes = w.finish();
  assert.deepEqual(decodePost(bytes), fields(fromBinary(MessageSchema, bytes)));
  assert.equal(decodePost(bytes).user, "last");
});

Deno.test("decodePost() throws where fromBinary() throws", () => {
  const good = toBinary(
    MessageSchema,
    create(MessageSchema, {
      user: "ann",
      room: "r",
      content: "hello",
      timestamp: timestampFromMs(5),
    }),
  );
  const wrongWire = new BinaryWriter().tag(2, WireType.Varint).int32(1)
    .finish();
  const badTimestamp = new BinaryWriter().tag(5, WireType.LengthDelimited)
    .bytes(
      new BinaryWriter().tag(1, WireType.LengthDelimited).string("x")
        .finish(),
    ).finish();
  const badEpoch = new BinaryWriter().tag(8, WireType.LengthDelimited)
    .bytes(new Uint8Array([0x61, 0xff])).finish();
  const wrongOffsetWire = new BinaryWriter().tag(7, WireType.LengthDelimited)
    .string("1").finish();
  const cases = [
    good.subarray(0, good.length - 2),
    wrongWire,
    badTimestamp,
    badEpoch,
    wrongOffsetWire,
  ];
  for (const bytes of cases) {
    assert.throws(() => fromBinary(MessageSchema, bytes));
    assert.throws(() => decodePost(bytes));
  }
});

Deno.test("decodePost() agrees with fromBinary() on generated and mutated messages (fast and slow paths)", () => {
  // A deterministic generator: valid messages of every shape the fast path
  // takes, then every single-byte change and truncation of them. What
  // decodePost() accepts, fromBinary() accepts with the same strings; what
  // fromBinary() rejects, decodePost() rejects. decodePost() may reject
  // more: a known field with the wrong wire type, which protobuf-es reads
  // as the field's type anyway.
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
  const strings = [
    "",
    "a",
    "Zoë 🚀",
    "\uFEFFbom",
    "x".repeat(40),
    "é".repeat(20),
  ];
  const samples: Uint8Array[] = [];
  for (let i = 0; i < 60; i++) {
    samples.push(toBinary(
      MessageSchema,
      create(MessageSchema, {
        id: strings[rand(strings.length)],
        user: strings[rand(strings.length)],
        content: strings[rand(strings.length)],
        room: strings[rand(strings.length)],
        timestamp: rand(3) === 0 ? undefined : timestampFromMs(
          rand(2) === 0 ? 1_700_000_000_123 : -86_400_000 * rand(1000),
        ),
        type: rand(4) as MessageType,
        offset: [0n, 1n, 300n, 2n ** 40n][rand(4)],
        epoch: strings[rand(strings.length)],
        idempotencyKey: rand(2) === 0 ? "" : strings[rand(strings.length)],
      }),
    ));
  }
  const checked = (bytes: Uint8Array) => {
    let want: unknown, got: unknown;
    try {
      want = fields(fromBinary(MessageSchema, bytes));
    } catch {
      want = "throws";
    }
    try {
      got = decodePost(bytes);
    } catch {
      got = "throws";
    }
    if (got !== "throws" || want === "throws") {
      assert.deepEqual(got, want, `bytes ${Array.from(bytes)}`);
    }
    // decodePostHead() accepts and rejects exactly what decodePost() does.
    let gotHead: unknown;
    try {
      gotHead = decodePostHead(bytes);
    } catch {
      gotHead = "throws";
    }
    assert.deepEqual(
      gotHead,
      got === "throws" ? "throws" : head(got as PostFields),
      `head of bytes ${Array.from(bytes)}`,
    );
    // decodeChatPost() too, and its spans hold the same strings.
    let gotChat: unknown;
    try {
      const post = decodeChatPost(bytes);
      const text = (at: number, end: number) =>
        new TextDecoder("utf-8", { ignoreBOM: true }).decode(
          post.body.subarray(at, end),
        );
      gotChat = {
        user: post.user,
        type: post.type,
        hasContent: post.hasContent,
        id: text(post.idAt, post.idEnd),
        content: text(post.contentAt, post.contentEnd),
        room: text(post.roomAt, post.roomEnd),
        key: post.key,
      };
    } catch {
      gotChat = "throws";
    }
    assert.deepEqual(
      gotChat,
      got === "throws" ? "throws" : { ...(got as PostFields) },
      `chat post of bytes ${Array.from(bytes)}`,
    );
    return got !== "throws";
  };
  let accepted = 0, rejected = 0;
  for (const bytes of samples) {
    assert.ok(checked(bytes));
    for (let cut = 0; cut < bytes.length; cut++) {
      checked(bytes.subarray(0, cut)) ? accepted++ : rejected++;
    }
    for (let i = 0; i < bytes.length; i++) {
      for (
        const v of [
          0x00,
          0x08,
          0x0a,
          0x2a,
          0x30,
          0x38,
          0x3a,
          0x42,
          0x7f,
          0x80,
          0xff,
        ]
      ) {
        const mutated = bytes.slice();
        mutated[i] = v;
        checked(mutated) ? accepted++ : rejected++;
      }
    }
  }
  // Both outcomes were exercised in bulk.
  assert.ok(accepted > 1000 && rejected > 1000, `${accepted} / ${rejected}`);
});

Deno.test("decodeSendRequest() agrees with fromBinary() on mutated requests", () => {
  const base = [
    { user: "ann", content: "hi", room: "r" },
    { user: "Zoë 🚀", content: "é".repeat(30), room: "\uFEFFgénéral" },
    { user: "ann", content: "hi", room: "r", idempotencyKey: "k-ü-1" },
  ].map((m) =>
    toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, m))
  );
  let accepted = 0;
  for (const bytes of base) {
    const variants = [bytes];
    for (let cut = 0; cut < bytes.length; cut++) {
      variants.push(bytes.subarray(0, cut));
    }
    for (let i = 0; i < bytes.length; i++) {
      for (const v of [0x00, 0x0a, 0x12, 0x1a, 0x22, 0x7f, 0x80, 0xff]) {
        const mutated = bytes.slice();
        mutated[i] = v;
        variants.push(mutated);
      }
    }
    for (const b of variants) {
      let want: unknown, got: unknown;
      try {
        const r = fromBinary(SendMessageRequestSchema, b);
        want = {
          user: r.user,
          content: r.content,
          room: r.room,
          idempotencyKey: r.idempotencyKey,
        };
      } catch {
        want = "throws";
      }
      try {
        got = { ...decodeSendRequest(b) };
      } catch {
        got = "throws";
      }
      // Stricter only about a known field's wire type, like decodePost().
      if (got !== "throws" || want === "throws") {
        assert.deepEqual(got, want, `bytes ${Array.from(b)}`);
      }
      if (got !== "throws") accepted++;
    }
  }
  assert.ok(accepted > 50);
});

Deno.test("decodePost() reads a repeated user or room again from its bytes when they change, even at the same length", () => {
  // The user and room of the previous message are reused when the bytes
  // match; a change of one byte, or of length, must not reuse them.
  const rooms = [
    "room-a",
    "room-a",
    "room-b",
    "room-b",
    "róom-a",
    "róom-a",
    "r".repeat(256),
    "r".repeat(255) + "s",
    "x".repeat(300),
    "x".repeat(300),
    "room-a",
  ];
  for (const [i, room] of rooms.entries()) {
    const user = i % 3 === 0 ? "ann" : "bob";
    const bytes = toBinary(
      MessageSchema,
      create(MessageSchema, { user, room, content: `m${i}` }),
    );
    const got = decodePost(bytes);
    assert.equal(got.room, room, `message ${i}`);
    assert.equal(got.user, user, `message ${i}`);
    assert.equal(got.content, `m${i}`);
  }
  // Bytes that failed to decode are never kept: invalid UTF-8 of the same
  // length as the last good room still throws.
  const good = toBinary(MessageSchema, create(MessageSchema, { room: "ab" }));
  assert.equal(decodePost(good).room, "ab");
  const bad = good.slice();
  bad[bad.length - 1] = 0xff;
  assert.throws(() => decodePost(bad));
  assert.throws(() => decodePost(bad));
});

Deno.test("decodePostHead() checks the id and content it does not build, and tells whether there is content", () => {
  const encode = (content: string, id = "i") =>
    toBinary(
      MessageSchema,
      create(MessageSchema, { id, user: "u", room: "r", content }),
    );
  assert.deepEqual(decodePostHead(encode("hi")), {
    user: "u",
    room: "r",
    type: 0,
    hasContent: true,
    key: "",
  });
  assert.equal(decodePostHead(encode("")).hasContent, false);
  assert.equal(decodePostHead(encode("é".repeat(50), "ï")).hasContent, true);
  // Invalid UTF-8 in the content or the id is rejected as decodePost() does.
  for (const bytes of [encode("ab"), encode("x", "ab")]) {
    const at = bytes.indexOf(0x62); // "b"
    const bad = bytes.slice();
    bad[at] = 0xff;
    assert.throws(() => decodePost(bad));
    assert.throws(() => decodePostHead(bad));
  }
  // Whitespace only is no content, in every decoder, whatever the spaces;
  // text with a space at either end (or only inside) is content.
  const blank = [
    " ",
    "   ",
    " \n\t ",
    "\r\v\f",
    "\u00a0",
    " \u3000 ",
    "\ufeff",
    "\u2028\u2029\u1680\u202f\u205f\u2000\u200a",
  ];
  const content = [
    " a",
    "a ",
    " a ",
    "\u00a0é\u00a0",
    "\u3000字",
    " 🚀 ",
    "\u0085",
    "\u200b",
    "\x00",
    " \x01 ",
  ];
  for (const [texts, has] of [[blank, false], [content, true]] as const) {
    for (const c of texts) {
      const bytes = encode(c);
      const why = JSON.stringify(c);
      assert.equal(decodePostHead(bytes).hasContent, has, why);
      assert.equal(decodePost(bytes).hasContent, has, why);
      assert.equal(decodeChatPost(bytes).hasContent, has, why);
      assert.equal(c.trim() !== "", has, why);
    }
  }
  // The last occurrence of the content wins, an empty one too.
  const twice = new Uint8Array([...encode("hi"), 0x1a, 0]);
  assert.equal(decodePostHead(twice).hasContent, false);
  assert.equal(decodePost(twice).content, "");
});
