/**
 * A hand-written decoder for the fields of a streamed `chat.Message` that the
 * server reads: id, user, content and room.
 *
 * UploadMessages and Chat decode every inbound message only to validate it
 * and pick its room; the bytes themselves are what gets broadcast. The
 * reflective `fromBinary()` builds a full message (with a Timestamp object)
 * and was about 15% of upload CPU. This loop over protobuf-es's
 * `BinaryReader` reads the four strings and checks the rest (timestamp,
 * type, unknown fields) for well-formedness without building them.
 * It rejects what `fromBinary()` rejects: truncation, a bad wire type or a
 * known field with the wrong wire type.
 */
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** The string fields of `chat.Message` the server uses. */
export interface PostFields {
  readonly id: string;
  readonly user: string;
  readonly content: string;
  readonly room: string;
}

/** Decodes a `chat.Message`'s string fields; throws on malformed bytes. */
export function decodePost(bytes: Uint8Array): PostFields {
  const reader = new BinaryReader(bytes);
  let id = "", user = "", content = "", room = "";
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    switch (no) {
      case 1:
        expect(wireType, WireType.LengthDelimited, no);
        id = reader.string();
        break;
      case 2:
        expect(wireType, WireType.LengthDelimited, no);
        user = reader.string();
        break;
      case 3:
        expect(wireType, WireType.LengthDelimited, no);
        content = reader.string();
        break;
      case 4:
        expect(wireType, WireType.LengthDelimited, no);
        room = reader.string();
        break;
      case 5:
        expect(wireType, WireType.LengthDelimited, no);
        checkTimestamp(reader.bytes());
        break;
      case 6:
        expect(wireType, WireType.Varint, no);
        reader.int32();
        break;
      default:
        reader.skip(wireType, no);
    }
  }
  return { id, user, content, room };
}

/** `google.protobuf.Timestamp`: int64 seconds = 1, int32 nanos = 2. */
function checkTimestamp(bytes: Uint8Array): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === 1 || no === 2) {
      expect(wireType, WireType.Varint, no);
      if (no === 1) reader.int64();
      else reader.int32();
    } else {
      reader.skip(wireType, no);
    }
  }
}

function expect(actual: WireType, wanted: WireType, no: number): void {
  if (actual !== wanted) {
    throw new Error(`chat.Message field ${no}: wire type ${actual}`);
  }
}

/** The fields of a `chat.SendMessageRequest`: user = 1, content = 2, room = 3. */
export interface SendFields {
  readonly user: string;
  readonly content: string;
  readonly room: string;
}

/**
 * Decodes a `chat.SendMessageRequest` without building a message object;
 * throws on malformed bytes, as `fromBinary()` does.
 */
export function decodeSendRequest(bytes: Uint8Array): SendFields {
  const reader = new BinaryReader(bytes);
  let user = "", content = "", room = "";
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no >= 1 && no <= 3) {
      if (wireType !== WireType.LengthDelimited) {
        throw new Error(
          `chat.SendMessageRequest field ${no}: wire type ${wireType}`,
        );
      }
      const value = reader.string();
      if (no === 1) user = value;
      else if (no === 2) content = value;
      else room = value;
    } else {
      reader.skip(wireType, no);
    }
  }
  return { user, content, room };
}
