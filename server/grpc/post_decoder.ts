/**
 * A hand-written decoder for the fields of a streamed `chat.Message` that the
 * server reads: id, user, content, room and idempotency_key (offset and
 * epoch are checked, not kept).
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
import { isBlank } from "../rooms/validate.ts";

/**
 * What checking and routing a posted `chat.Message` needs: UploadMessages
 * reads no more (its id and content are checked, not decoded).
 */
export interface PostHead {
  readonly user: string;
  readonly room: string;
  /** `MessageType` as sent (0 is CHAT); an int32, as fromBinary() reads it. */
  readonly type: number;
  /** The content is not blank: not empty nor whitespace only (isBlank()). */
  readonly hasContent: boolean;
  /** `idempotency_key` ("" when absent). */
  readonly key: string;
}

/**
 * The fields of `chat.Message` the server uses. A client's own `offset` and
 * `epoch` are checked like the rest but not kept: the server assigns both
 * (and its pair, appended on delivery, wins).
 */
export interface PostFields extends PostHead {
  readonly id: string;
  readonly content: string;
}

/**
 * A Chat message as its handler needs it: the head, and where the id, the
 * content and the room are in `body` (the bytes it came in), so that the
 * echo copies them instead of building strings and encoding them again.
 * Both are checked as strictly as decodePost() checks them (valid UTF-8),
 * and valid UTF-8 decoded and encoded again is the same bytes.
 */
export interface ChatPost extends PostHead {
  readonly body: Uint8Array;
  readonly idAt: number;
  readonly idEnd: number;
  readonly contentAt: number;
  readonly contentEnd: number;
  readonly roomAt: number;
  readonly roomEnd: number;
}

/** Decodes a Chat message (see {@linkcode ChatPost}); throws on malformed bytes. */
export function decodeChatPost(bytes: Uint8Array): ChatPost {
  return (fastPost(bytes, SPANS) ?? readPost(bytes, SPANS)) as ChatPost;
}

/** What a decoder builds: the head only, the strings too, or their spans. */
const HEAD = 0, FULL = 1, SPANS = 2;
type Mode = typeof HEAD | typeof FULL | typeof SPANS;

/**
 * Decodes a `chat.Message`'s string fields; throws on malformed bytes.
 *
 * The common message (known fields only, with their proper wire types) is
 * read by a plain loop over the bytes; anything else, including every kind
 * of malformed input, goes to the BinaryReader loop below, so the fast path
 * never has to decide what to reject.
 */
export function decodePost(bytes: Uint8Array): PostFields {
  return (fastPost(bytes, FULL) ?? readPost(bytes, FULL)) as PostFields;
}

/**
 * decodePost() without building the id and the content: both are checked
 * as strictly (UTF-8 included), but a string costs ~4 ns a byte to build
 * and an upload needs neither.
 */
export function decodePostHead(bytes: Uint8Array): PostHead {
  return fastPost(bytes, HEAD) ?? readPost(bytes, HEAD);
}

// As fromBinary() decodes proto3 strings: invalid UTF-8 throws, a BOM stays.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/**
 * Up to this length an ASCII string is built from char codes: Deno's
 * TextDecoder costs ~0.6 µs a call whatever the length (measured on Deno
 * 2.9.6; char codes cost ~4 ns a byte), so it pays only for long strings.
 */
const SHORT = 96;
const shortCodes: number[][] = Array.from(
  { length: SHORT + 1 },
  (_, n) => new Array(n).fill(0),
);

/** A string field's value, decoded like fromBinary() does. */
function text(bytes: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n <= SHORT) {
    const codes = shortCodes[n];
    for (let i = 0; i < n; i++) {
      const b = bytes[start + i];
      if (b > 0x7f) return utf8.decode(bytes.subarray(start, end));
      codes[i] = b;
    }
    return String.fromCharCode.apply(null, codes);
  }
  return utf8.decode(bytes.subarray(start, end));
}

/**
 * The last value decoded for one string field. A stream posts with the
 * same user and room message after message: comparing the bytes with the
 * previous ones costs less than building the string again (and the same
 * string object keeps its hash for the room maps downstream). Equal bytes
 * decode to the same string, and only bytes that decoded are kept, so a
 * hit needs no UTF-8 check either.
 */
class RecentText {
  readonly #bytes = new Uint8Array(RECENT_BYTES);
  #length = -1;
  #value = "";

  get(bytes: Uint8Array, start: number, end: number): string {
    const n = end - start;
    if (n === this.#length) {
      const kept = this.#bytes;
      let i = 0;
      while (i < n && kept[i] === bytes[start + i]) i++;
      if (i === n) return this.#value;
    }
    const value = text(bytes, start, end);
    if (n <= RECENT_BYTES) {
      this.#bytes.set(bytes.subarray(start, end));
      this.#length = n;
      this.#value = value;
    }
    return value;
  }
}

/** Longest value a RecentText keeps: names are at most 256 characters. */
const RECENT_BYTES = 256;
const recentUser = new RecentText();
const recentRoom = new RecentText();

/** Checks a string field's bytes as text() does, without building it. */
function checkText(bytes: Uint8Array, start: number, end: number): void {
  for (let i = start; i < end; i++) {
    if (bytes[i] > 0x7f) {
      utf8.decode(bytes.subarray(start, end));
      return;
    }
  }
}

/**
 * isBlank() on a string field's bytes (valid UTF-8) without building the
 * string for the common message: a first byte that cannot start a
 * whitespace character trim() removes (anything but ASCII up to space and
 * the lead bytes of U+00A0, U+1680, U+2000–U+205F, U+3000 and U+FEFF), or
 * a visible ASCII last byte, decides it. Only the rest is decoded.
 */
function blankBytes(bytes: Uint8Array, start: number, end: number): boolean {
  if (start === end) return true;
  const first = bytes[start], last = bytes[end - 1];
  const mayStartSpace = first <= 0x20 || first === 0xc2 ||
    (first >= 0xe1 && first <= 0xe3) || first === 0xef;
  if (!mayStartSpace || (last > 0x20 && last < 0x80)) return false;
  return isBlank(text(bytes, start, end));
}

// Shared between fastPost() and its helpers; reset on every call.
let at = 0;

/** A varint of at most 5 bytes below 2^31, or -1 (left to the slow path). */
function varint(bytes: Uint8Array, end: number): number {
  // Tags and short lengths are one byte.
  if (at < end && bytes[at] < 0x80) return bytes[at++];
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (at >= end) return -1;
    const b = bytes[at++];
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return value < 2 ** 31 ? value : -1;
  }
  return -1;
}

/**
 * Checks a Timestamp's body on the fast path: only its two varint fields
 * (int64 seconds = 1, int32 nanos = 2), each at most 5 bytes (seconds up to
 * 2^35, the year 3058). Anything else is left to the slow path.
 */
function timestampOk(bytes: Uint8Array, end: number): boolean {
  while (at < end) {
    const tag = bytes[at++];
    if (tag !== 0x08 && tag !== 0x10) return false;
    let n = 0;
    while (at < end && bytes[at] >= 0x80 && n < 4) {
      at++;
      n++;
    }
    if (at >= end || bytes[at] >= 0x80) return false;
    at++;
  }
  return true;
}

/**
 * The fast path of decodePost() (FULL), decodePostHead() (HEAD) and
 * decodeChatPost() (SPANS), or undefined to take the slow one.
 */
function fastPost(bytes: Uint8Array, mode: Mode): PostHead | undefined {
  const end = bytes.length;
  const full = mode === FULL;
  let id = "", user = "", content = "", room = "", type = 0, key = "";
  let hasContent = false;
  span.reset();
  at = 0;
  while (at < end) {
    const tag = varint(bytes, end);
    if (tag === -1) return undefined;
    if (tag === 0x30) { // 6: type, varint
      type = varint(bytes, end);
      if (type === -1) return undefined;
      continue;
    }
    if (tag === 0x38) { // 7: offset, varint: checked, not kept
      if (varint(bytes, end) === -1) return undefined;
      continue;
    }
    if (tag === 0x42) { // 8: epoch, a string: checked, not kept
      const len = varint(bytes, end);
      if (len === -1 || len > end - at) return undefined;
      const start = at;
      at += len;
      checkText(bytes, start, at);
      continue;
    }
    if (tag === 0x4a) { // 9: idempotency_key, a string
      const len = varint(bytes, end);
      if (len === -1 || len > end - at) return undefined;
      const start = at;
      at += len;
      key = text(bytes, start, at);
      continue;
    }
    if ((tag & 7) !== 2 || tag < 0x08 || tag > 0x2a) return undefined;
    const len = varint(bytes, end);
    if (len === -1 || len > end - at) return undefined;
    const start = at;
    at += len;
    switch (tag >>> 3) {
      case 1:
        if (full) id = text(bytes, start, at);
        else checkText(bytes, start, at);
        span.idAt = start;
        span.idEnd = at;
        break;
      case 2:
        user = recentUser.get(bytes, start, at);
        break;
      case 3:
        // The last occurrence of a field wins, an empty one included.
        if (full) {
          content = text(bytes, start, at);
          hasContent = !isBlank(content);
        } else {
          checkText(bytes, start, at);
          hasContent = !blankBytes(bytes, start, at);
        }
        span.contentAt = start;
        span.contentEnd = at;
        break;
      case 4:
        room = recentRoom.get(bytes, start, at);
        span.roomAt = start;
        span.roomEnd = at;
        break;
      case 5: {
        const after = at;
        at = start;
        if (!timestampOk(bytes, after)) return undefined;
        break;
      }
    }
  }
  return decoded(mode, bytes, id, user, content, room, type, hasContent, key);
}

/**
 * Where the last id, content and room of the message being decoded are,
 * for decodeChatPost(); like `at`, shared by both decoders and reset on
 * every call.
 */
const span = {
  idAt: 0,
  idEnd: 0,
  contentAt: 0,
  contentEnd: 0,
  roomAt: 0,
  roomEnd: 0,
  reset() {
    this.idAt =
      this.idEnd =
      this.contentAt =
      this.contentEnd =
        0;
    this.roomAt = this.roomEnd = 0;
  },
};

/** What a decoder returns in `mode`, from the fields read and `span`. */
function decoded(
  mode: Mode,
  body: Uint8Array,
  id: string,
  user: string,
  content: string,
  room: string,
  type: number,
  hasContent: boolean,
  key: string,
): PostHead {
  if (mode === SPANS) {
    const { idAt, idEnd, contentAt, contentEnd, roomAt, roomEnd } = span;
    const post: ChatPost = {
      user,
      room,
      type,
      hasContent,
      body,
      idAt,
      idEnd,
      contentAt,
      contentEnd,
      roomAt,
      roomEnd,
      key,
    };
    return post;
  }
  if (mode === HEAD) return { user, room, type, hasContent, key };
  const post: PostFields = { id, user, content, room, type, hasContent, key };
  return post;
}

/** The general decoder: any valid message, every rejection. */
function readPost(bytes: Uint8Array, mode: Mode): PostHead {
  const reader = new BinaryReader(bytes);
  let id = "", user = "", content = "", room = "", type = 0, key = "";
  span.reset();
  // A string field's value; its bytes end where the reader is then.
  const string = (no: number, wireType: WireType) => {
    expect(wireType, WireType.LengthDelimited, no);
    return reader.string(true);
  };
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    switch (no) {
      case 1:
        id = string(no, wireType);
        span.idEnd = reader.pos;
        span.idAt = reader.pos - utf8Bytes(id);
        break;
      case 2:
        user = string(no, wireType);
        break;
      case 3:
        content = string(no, wireType);
        span.contentEnd = reader.pos;
        span.contentAt = reader.pos - utf8Bytes(content);
        break;
      case 4:
        room = string(no, wireType);
        span.roomEnd = reader.pos;
        span.roomAt = reader.pos - utf8Bytes(room);
        break;
      case 5:
        expect(wireType, WireType.LengthDelimited, no);
        checkTimestamp(reader.bytes());
        break;
      case 6:
        expect(wireType, WireType.Varint, no);
        type = reader.int32();
        break;
      case 7:
        expect(wireType, WireType.Varint, no);
        reader.uint64();
        break;
      case 8:
        expect(wireType, WireType.LengthDelimited, no);
        reader.string(true);
        break;
      case 9:
        key = string(no, wireType);
        break;
      default:
        reader.skip(wireType, no);
    }
  }
  const hasContent = !isBlank(content);
  return decoded(mode, bytes, id, user, content, room, type, hasContent, key);
}

const encoder = new TextEncoder();
/** The UTF-8 length of a string decoded from valid UTF-8 (the slow path). */
const utf8Bytes = (s: string) => encoder.encode(s).length;

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

/**
 * The fields of a `chat.SendMessageRequest`: user = 1, content = 2, room = 3,
 * idempotency_key = 4 ("" when absent).
 */
export interface SendFields {
  readonly user: string;
  readonly content: string;
  readonly room: string;
  readonly idempotencyKey: string;
}

/**
 * Decodes a `chat.SendMessageRequest` without building a message object;
 * throws on malformed bytes, as `fromBinary()` does.
 */
export function decodeSendRequest(bytes: Uint8Array): SendFields {
  return fastSend(bytes) ?? readSend(bytes);
}

/** decodeSendRequest()'s fast path: fields 1–4 only; else undefined. */
function fastSend(bytes: Uint8Array): SendFields | undefined {
  const end = bytes.length;
  let user = "", content = "", room = "", idempotencyKey = "";
  at = 0;
  while (at < end) {
    const tag = varint(bytes, end);
    if (tag !== 0x0a && tag !== 0x12 && tag !== 0x1a && tag !== 0x22) {
      return undefined;
    }
    const len = varint(bytes, end);
    if (len === -1 || len > end - at) return undefined;
    const start = at;
    at += len;
    if (tag === 0x0a) user = text(bytes, start, at);
    else if (tag === 0x12) content = text(bytes, start, at);
    else if (tag === 0x1a) room = text(bytes, start, at);
    else idempotencyKey = text(bytes, start, at);
  }
  return { user, content, room, idempotencyKey };
}

/** The general SendMessageRequest decoder: any valid message, every rejection. */
function readSend(bytes: Uint8Array): SendFields {
  const reader = new BinaryReader(bytes);
  let user = "", content = "", room = "", idempotencyKey = "";
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no >= 1 && no <= 4) {
      if (wireType !== WireType.LengthDelimited) {
        throw new Error(
          `chat.SendMessageRequest field ${no}: wire type ${wireType}`,
        );
      }
      const value = reader.string(true);
      if (no === 1) user = value;
      else if (no === 2) content = value;
      else if (no === 3) room = value;
      else idempotencyKey = value;
    } else {
      reader.skip(wireType, no);
    }
  }
  return { user, content, room, idempotencyKey };
}
