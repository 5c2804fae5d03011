/**
 * Reads the idempotency key of a stored `chat.Message` (field 9) with the
 * fields its repeat is answered with: id = 1, user = 2, timestamp = 5. Run
 * on a room's retained history the first time a keyed post comes for it
 * (rooms/idempotency.ts), not per message delivered, and only for a store
 * that does not check keys itself (log, sqlite, memory; not Redis, whose
 * append script does: server.ts).
 */
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { ChatError } from "../rooms/errors.ts";
import type { HistoryStore } from "../rooms/history_store.ts";
import type { StoredKey } from "../rooms/idempotency.ts";
import { MAX_IDEMPOTENCY_KEY_LENGTH } from "../rooms/validate.ts";

/** A stored message's key and what its repeat is answered with. */
export interface KeyedMessage {
  readonly id: string;
  readonly user: string;
  readonly key: string;
  readonly timeMs: number;
}

/** The key of a stored message body, or undefined when it has none. */
export function readStoredKey(body: Uint8Array): KeyedMessage | undefined {
  const r = new BinaryReader(body);
  let id = "", user = "", key = "", timeMs = 0;
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (wireType === WireType.LengthDelimited && no === 1) id = r.string();
    else if (wireType === WireType.LengthDelimited && no === 2) {
      user = r.string();
    } else if (wireType === WireType.LengthDelimited && no === 9) {
      key = r.string();
    } else if (wireType === WireType.LengthDelimited && no === 5) {
      timeMs = readTimestampMs(r.bytes());
    } else r.skip(wireType, no);
  }
  return key === "" ? undefined : { id, user, key, timeMs };
}

/** A google.protobuf.Timestamp's bytes as ms since the epoch. */
function readTimestampMs(bytes: Uint8Array): number {
  const r = new BinaryReader(bytes);
  let seconds = 0, nanos = 0;
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1 && wireType === WireType.Varint) {
      seconds = Number(r.int64());
    } else if (no === 2 && wireType === WireType.Varint) nanos = r.int32();
    else r.skip(wireType, no);
  }
  return seconds * 1000 + Math.floor(nanos / 1_000_000);
}

/**
 * Whether `k` could have been posted with its key checked: a message stored
 * before keys were checked on UploadMessages and Chat may hold a key of any
 * length, and one must not go into the index (whose bound counts keys, not
 * bytes).
 */
function checkedKey(k: KeyedMessage): boolean {
  return k.key.length <= MAX_IDEMPOTENCY_KEY_LENGTH;
}

/** Messages read per page while looking for keys. */
const KEY_PAGE = 256;

/**
 * The keyed messages of `room` with offset > `after`, read page by page from
 * the store, and the last offset read (rooms/idempotency.ts's `ReadKeys`).
 * A store that fails is UNAVAILABLE to the post that waited for it.
 */
export async function readKeys(
  store: Pick<HistoryStore, "read">,
  room: string,
  after: number,
): Promise<{ keys: StoredKey[]; last: number }> {
  const keys: StoredKey[] = [];
  let last = after;
  try {
    while (true) {
      const page = await store.read(room, last, KEY_PAGE);
      for (const m of page) {
        last = m.offset;
        const k = readStoredKey(m.body);
        if (k !== undefined && checkedKey(k)) {
          keys.push({ ...k, offset: m.offset, storedMs: m.timeMs });
        }
      }
      if (page.length < KEY_PAGE) return { keys, last };
    }
  } catch (cause) {
    throw new ChatError(
      "unavailable",
      `history store unavailable: ${(cause as Error)?.message ?? cause}`,
      { cause },
    );
  }
}
