/**
 * decodePost() (server/grpc/post_decoder.ts) agrees with protobuf-es's
 * fromBinary() on valid messages and rejects the malformed ones it rejects.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { MessageSchema, MessageType } from "../gen/chat_pb.ts";
import { decodePost } from "../server/grpc/post_decoder.ts";

const fields = (
  m: { id: string; user: string; content: string; room: string },
) => ({
  id: m.id,
  user: m.user,
  content: m.content,
  room: m.room,
});

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
  const cases = [good.subarray(0, good.length - 2), wrongWire, badTimestamp];
  for (const bytes of cases) {
    assert.throws(() => fromBinary(MessageSchema, bytes));
    assert.throws(() => decodePost(bytes));
  }
});
