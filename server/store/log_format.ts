/**
 * The log store's bytes (log_store.ts): frames of records, the same in log
 * segments and snapshots.
 *
 * A frame is `[u32 length][u32 crc32(payload)][u32 crc32(first 8 bytes)]
 * [payload]`, little-endian. The header's own checksum lets recovery trust a
 * length before it reads the payload: a length that runs past the end of the
 * file is then an incomplete last write (a torn tail), never a flipped bit
 * that would make everything after it look torn. One frame is one
 * transaction: a batch of appends, a sweep's drops, a chunk of a snapshot.
 *
 * A payload is a run of records, each a type byte and fixed fields:
 *
 * | type | record   | fields                                                        |
 * | ---- | -------- | ------------------------------------------------------------- |
 * | 1    | room     | u32 id, f64 last offset, f64 last ms, u8+epoch, u16+name (UTF-8) |
 * | 2    | message  | u32 room id, f64 offset, f64 time ms, u32+body                |
 * | 3    | last id  | f64 the highest `msg_N` number                                |
 * | 4    | drop     | u32 room id (expired: forgotten)                              |
 * | 5    | head     | 8-byte magic, u8 kind, f64 sequence, f64 last id, u32 next room id |
 * | 6    | end      | u32 rooms, f64 messages (a snapshot's last frame)             |
 *
 * CRC-32 is `node:zlib`'s `crc32` (native in Deno 2.9, ~0.1 µs for 100
 * bytes): nothing to add or hand-write.
 */
import { crc32 } from "node:zlib";

export const FRAME_HEADER = 12;
/** The largest payload a frame's u32 length can say. */
export const MAX_PAYLOAD = 0xffff_ffff;
export const REC_ROOM = 1;
export const REC_MESSAGE = 2;
export const REC_LAST_ID = 3;
export const REC_DROP = 4;
export const REC_HEAD = 5;
export const REC_END = 6;

/** A head record's kind: the first frame of a log segment or a snapshot. */
export const KIND_SEGMENT = 1;
export const KIND_SNAPSHOT = 2;

const MAGIC = new TextEncoder().encode("chatlog1");
const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of a name (writes keep it), not a mark to strip.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A frame's payload does not parse (its CRC matched: a bug or tampering). */
export class FormatError extends Error {
  override name = "FormatError";
}

/** Builds one frame at a time in a reused buffer. */
export class FrameBuilder {
  #buf: Uint8Array;
  #view: DataView;
  #at = FRAME_HEADER;
  readonly #initial: number;

  /**
   * `maxPayload`: the largest payload `finish()` accepts (the length field's
   * u32; tests pass less).
   */
  constructor(initial = 64 * 1024, readonly maxPayload = MAX_PAYLOAD) {
    this.#initial = initial;
    this.#buf = new Uint8Array(initial);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes of payload so far. */
  get payloadBytes(): number {
    return this.#at - FRAME_HEADER;
  }

  /**
   * Starts a new frame. A large buffer (grown for a large batch) is let go
   * once a frame used less than a quarter of it: not after every large
   * batch, which would grow it again at once (uploads).
   */
  reset(): void {
    const used = this.#at;
    this.#at = FRAME_HEADER;
    if (this.#buf.length > 16 * this.#initial && used * 4 < this.#buf.length) {
      this.#buf = new Uint8Array(this.#initial);
      this.#view = new DataView(this.#buf.buffer);
    }
  }

  #ensure(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const bigger = new Uint8Array(Math.max(this.#at + n, this.#buf.length * 2));
    bigger.set(this.#buf.subarray(0, this.#at));
    this.#buf = bigger;
    this.#view = new DataView(bigger.buffer);
  }

  #text(s: string, lengthBytes: 1 | 2): void {
    this.#ensure(lengthBytes + s.length * 3);
    const at = this.#at + lengthBytes;
    const { written } = encoder.encodeInto(s, this.#buf.subarray(at));
    if (lengthBytes === 1) this.#buf[this.#at] = written;
    else this.#view.setUint16(this.#at, written, true);
    this.#at = at + written;
  }

  room(id: number, last: number, lastMs: number, epoch: string, name: string) {
    this.#ensure(21);
    const v = this.#view;
    let at = this.#at;
    this.#buf[at++] = REC_ROOM;
    v.setUint32(at, id, true);
    v.setFloat64(at + 4, last, true);
    v.setFloat64(at + 12, lastMs, true);
    this.#at = at + 20;
    this.#text(epoch, 1);
    this.#text(name, 2);
  }

  message(roomId: number, offset: number, timeMs: number, body: Uint8Array) {
    this.#ensure(25 + body.length);
    const v = this.#view;
    const at = this.#at;
    this.#buf[at] = REC_MESSAGE;
    v.setUint32(at + 1, roomId, true);
    v.setFloat64(at + 5, offset, true);
    v.setFloat64(at + 13, timeMs, true);
    v.setUint32(at + 21, body.length, true);
    this.#buf.set(body, at + 25);
    this.#at = at + 25 + body.length;
  }

  lastId(n: number): void {
    this.#ensure(9);
    this.#buf[this.#at] = REC_LAST_ID;
    this.#view.setFloat64(this.#at + 1, n, true);
    this.#at += 9;
  }

  drop(roomId: number): void {
    this.#ensure(5);
    this.#buf[this.#at] = REC_DROP;
    this.#view.setUint32(this.#at + 1, roomId, true);
    this.#at += 5;
  }

  head(kind: number, seq: number, lastId: number, nextRoomId: number): void {
    this.#ensure(30);
    const at = this.#at;
    this.#buf[at] = REC_HEAD;
    this.#buf.set(MAGIC, at + 1);
    this.#buf[at + 9] = kind;
    this.#view.setFloat64(at + 10, seq, true);
    this.#view.setFloat64(at + 18, lastId, true);
    this.#view.setUint32(at + 26, nextRoomId, true);
    this.#at = at + 30;
  }

  end(rooms: number, messages: number): void {
    this.#ensure(13);
    this.#buf[this.#at] = REC_END;
    this.#view.setUint32(this.#at + 1, rooms, true);
    this.#view.setFloat64(this.#at + 5, messages, true);
    this.#at += 13;
  }

  /**
   * The frame, header filled in: a view, valid until the next record.
   * Throws when the payload does not fit the u32 length (the batch fails).
   */
  finish(): Uint8Array {
    const length = this.#at - FRAME_HEADER;
    if (length > this.maxPayload) {
      throw new RangeError(
        `a log frame of ${length} bytes is larger than ${this.maxPayload}`,
      );
    }
    const v = this.#view;
    v.setUint32(0, length, true);
    v.setUint32(4, crc32(this.#buf.subarray(FRAME_HEADER, this.#at)), true);
    v.setUint32(8, crc32(this.#buf.subarray(0, 8)), true);
    return this.#buf.subarray(0, this.#at);
  }
}

/** The payload length of the frame at `at`, or undefined if its header is damaged. */
export function frameLength(buf: Uint8Array, at: number): number | undefined {
  const v = new DataView(buf.buffer, buf.byteOffset + at, FRAME_HEADER);
  if (crc32(buf.subarray(at, at + 8)) !== v.getUint32(8, true)) {
    return undefined;
  }
  return v.getUint32(0, true);
}

/** Whether the payload of the frame at `at` (length `length`) matches its CRC. */
export function payloadIntact(
  buf: Uint8Array,
  at: number,
  length: number,
): boolean {
  const want = new DataView(buf.buffer, buf.byteOffset + at, 8)
    .getUint32(4, true);
  const start = at + FRAME_HEADER;
  return crc32(buf.subarray(start, start + length)) === want;
}

/** What a frame's records say, in order. */
export interface RecordVisitor {
  room(
    id: number,
    last: number,
    lastMs: number,
    epoch: string,
    name: string,
  ): void;
  /** `body` is a view into the read buffer: copy what is kept. */
  message(
    roomId: number,
    offset: number,
    timeMs: number,
    body: Uint8Array,
  ): void;
  lastId(n: number): void;
  drop(roomId: number): void;
  head(kind: number, seq: number, lastId: number, nextRoomId: number): void;
  end(rooms: number, messages: number): void;
}

/** Reads a payload's records into `visit`; FormatError if they do not parse. */
export function decodeRecords(payload: Uint8Array, visit: RecordVisitor): void {
  const v = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const n = payload.length;
  let at = 0;
  const need = (k: number) => {
    if (at + k > n) throw new FormatError(`record cut short at byte ${at}`);
  };
  const text = (lengthBytes: 1 | 2) => {
    need(lengthBytes);
    const len = lengthBytes === 1 ? payload[at] : v.getUint16(at, true);
    at += lengthBytes;
    need(len);
    const s = decoder.decode(payload.subarray(at, at + len));
    at += len;
    return s;
  };
  while (at < n) {
    const type = payload[at++];
    switch (type) {
      case REC_ROOM: {
        need(20);
        const id = v.getUint32(at, true);
        const last = v.getFloat64(at + 4, true);
        const lastMs = v.getFloat64(at + 12, true);
        at += 20;
        const epoch = text(1);
        visit.room(id, last, lastMs, epoch, text(2));
        break;
      }
      case REC_MESSAGE: {
        need(24);
        const len = v.getUint32(at + 20, true);
        need(24 + len);
        visit.message(
          v.getUint32(at, true),
          v.getFloat64(at + 4, true),
          v.getFloat64(at + 12, true),
          payload.subarray(at + 24, at + 24 + len),
        );
        at += 24 + len;
        break;
      }
      case REC_LAST_ID:
        need(8);
        visit.lastId(v.getFloat64(at, true));
        at += 8;
        break;
      case REC_DROP:
        need(4);
        visit.drop(v.getUint32(at, true));
        at += 4;
        break;
      case REC_HEAD:
        need(29);
        for (let i = 0; i < MAGIC.length; i++) {
          if (payload[at + i] !== MAGIC[i]) {
            throw new FormatError("not a chat history log (bad magic)");
          }
        }
        visit.head(
          payload[at + 8],
          v.getFloat64(at + 9, true),
          v.getFloat64(at + 17, true),
          v.getUint32(at + 25, true),
        );
        at += 29;
        break;
      case REC_END:
        need(12);
        visit.end(v.getUint32(at, true), v.getFloat64(at + 4, true));
        at += 12;
        break;
      default:
        throw new FormatError(`unknown record type ${type} at byte ${at - 1}`);
    }
  }
}
