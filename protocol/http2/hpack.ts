/**
 * HPACK (RFC 7541): the header compression of HTTP/2.
 *
 * The decoder keeps the full dynamic table the peer's encoder drives. The
 * encoder's `encode()` never adds to the peer's table, so such a block
 * depends on no shared state; `encodeConstant()` (constant responses and
 * trailers, with a `tableSize` set) inserts each field once and refers to
 * it by index afterwards, within the peer's SETTINGS_HEADER_TABLE_SIZE
 * (`setPeerTableSize()`). Header names and
 * values are octet strings mapped one to one onto char codes 0-255: gRPC
 * metadata is ASCII and `-bin` values are base64, so nothing is UTF-8
 * decoded, and the encoder refuses char codes above 255.
 *
 * Limits are checked as the block is read: integers above 2^31 - 1 and
 * strings running past the block throw {@linkcode HpackError}. A decoded
 * header list above `maxHeaderListSize` is not a decoding failure (RFC 9113
 * §10.5.1: the limit is advisory, the answer a stream error): the block is
 * decoded to its end, so the dynamic table stays in step with the peer's,
 * but the fields past the limit are only counted, never kept, and
 * {@linkcode HpackDecoder.lastListSize} tells the caller. A hostile peer
 * cannot make the decoder hold more than the limit in fields, nor a string
 * longer than the block it came in (whose size the caller bounds).
 *
 * @module
 */
import {
  HpackError,
  huffmanDecodeString,
  huffmanEncodeStringInto,
  huffmanStringLength,
  latin1,
} from "./huffman.ts";

export { HpackError };

/**
 * One header field as `[name, value]`, both latin1 strings. Read-only: the
 * decoder hands out the same pair for every use of a table entry.
 */
export type HeaderField = readonly [name: string, value: string];

/** A free slot of a dynamic table. */
const NO_ENTRY: HeaderField = ["", ""];

/** The static table of RFC 7541 Appendix A; index 1 is `STATIC[0]`. */
const STATIC: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = STATIC.length;

/** SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 9113 §6.5.2). */
const DEFAULT_TABLE_SIZE = 4096;
/** Per-entry overhead of the table size accounting (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;
/** Largest integer accepted in a block; anything above is an attack. */
const MAX_INT = 0x7fffffff;

/** Limits of an {@linkcode HpackDecoder} beyond the table size. */
export interface HpackDecoderOptions {
  /**
   * Largest decoded header list kept, summed as name + value + 32 octets
   * per field (the SETTINGS_MAX_HEADER_LIST_SIZE measure). Default 64 KiB.
   * A larger list is decoded but cut to the fields within it; see
   * {@linkcode HpackDecoder.lastListSize}.
   */
  maxHeaderListSize?: number;
}

/**
 * Decodes the header blocks of one HTTP/2 connection's receive direction.
 *
 * One decoder per connection, fed every block in order, including those of
 * streams the caller no longer cares about: each block can change the
 * dynamic table the next one refers to.
 *
 * @example
 * ```ts
 * const decoder = new HpackDecoder(4096);
 * for (const [name, value] of decoder.decode(block)) headers.push(name, value);
 * ```
 */
export class HpackDecoder {
  readonly #maxTableSize: number;
  readonly #maxListSize: number;
  /** Current table size limit, set by the peer's size updates. */
  #capacity: number;
  /** Octets in use, by the §4.1 measure. */
  #size = 0;
  // The dynamic table as a ring; #newest is the slot of dynamic index 1.
  // An indexed field is the entry's own pair: a peer that indexes its
  // headers (most do) costs no pair per field.
  readonly #entries: HeaderField[];
  #newest = 0;
  #count = 0;
  #broken = false;
  // Read position while decoding a block.
  #pos = 0;
  #lastListSize = 0;

  /**
   * @param maxTableSize The SETTINGS_HEADER_TABLE_SIZE we advertise
   * (default 4096, the protocol default); the peer may not size the table
   * above it.
   */
  constructor(maxTableSize = 4096, options: HpackDecoderOptions = {}) {
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0) {
      throw new RangeError(`bad HPACK table size ${maxTableSize}`);
    }
    this.#maxTableSize = maxTableSize;
    this.#capacity = maxTableSize;
    this.#maxListSize = options.maxHeaderListSize ?? 64 * 1024;
    const slots = Math.max(1, Math.floor(maxTableSize / ENTRY_OVERHEAD));
    this.#entries = new Array(slots).fill(NO_ENTRY);
  }

  /** The largest header list `decode()` returns whole, in octets. */
  get maxHeaderListSize(): number {
    return this.#maxListSize;
  }

  /**
   * The size of the header list the last `decode()` read, by the
   * SETTINGS_MAX_HEADER_LIST_SIZE measure, counting the fields it dropped:
   * above `maxHeaderListSize`, that call returned only the fields that fit
   * (the first ones), and the request or response is to be refused as a
   * stream error.
   */
  get lastListSize(): number {
    return this.#lastListSize;
  }

  /** Octets the dynamic table holds now, by the RFC 7541 §4.1 measure. */
  get tableSize(): number {
    return this.#size;
  }

  /** The dynamic table size limit last set by the peer. */
  get tableCapacity(): number {
    return this.#capacity;
  }

  /** The dynamic table's entries, newest (index 62) first; for tests. */
  tableEntries(): HeaderField[] {
    const out: HeaderField[] = [];
    for (let i = 0; i < this.#count; i++) {
      const slot = this.#slot(i);
      out.push(this.#entries[slot]);
    }
    return out;
  }

  /**
   * Decodes one complete header block (the HEADERS or PUSH_PROMISE payload
   * joined with its CONTINUATION payloads, padding and priority removed).
   *
   * A well-formed block whose header list is above `maxHeaderListSize` is
   * decoded to its end (its table updates apply) and returns the fields
   * within the limit; check {@linkcode lastListSize}.
   *
   * @throws {HpackError} for any malformed block. The table may then be
   * half-updated, so the decoder refuses every later block: treat it as a
   * connection error of type COMPRESSION_ERROR.
   */
  decode(block: Uint8Array): HeaderField[] {
    if (this.#broken) {
      throw new HpackError("decoder failed earlier on this connection");
    }
    try {
      return this.#decode(block);
    } catch (err) {
      this.#broken = true;
      throw err;
    }
  }

  #decode(block: Uint8Array): HeaderField[] {
    const fields: HeaderField[] = [];
    const end = block.length;
    let listSize = 0;
    this.#pos = 0;
    // Size updates are allowed only before the first field (§4.2).
    while (this.#pos < end && (block[this.#pos] & 0xe0) === 0x20) {
      const size = this.#int(block, 5);
      if (size > this.#maxTableSize) {
        throw new HpackError(
          `table size update to ${size} above our ${this.#maxTableSize}`,
        );
      }
      this.#capacity = size;
      this.#evictTo(size);
    }
    while (this.#pos < end) {
      const b = block[this.#pos];
      let field: HeaderField;
      if (b >= 0x80) {
        const index = this.#int(block, 7);
        if (index === 0) throw new HpackError("indexed field with index 0");
        field = index <= STATIC_COUNT
          ? STATIC[index - 1]
          : this.#entries[this.#dynamicSlot(index)];
      } else if (b >= 0x40) {
        const name = this.#fieldName(block, 6);
        field = [name, this.#string(block)];
        this.#insert(field);
      } else if (b >= 0x20) {
        throw new HpackError("table size update after a header field");
      } else {
        // 0000xxxx without indexing, 0001xxxx never indexed: same to us.
        const name = this.#fieldName(block, 4);
        field = [name, this.#string(block)];
      }
      listSize += field[0].length + field[1].length + ENTRY_OVERHEAD;
      // Past the limit the fields are counted and dropped: the table has
      // taken what it must, and nothing more is held for this block.
      if (listSize <= this.#maxListSize) fields.push(field);
    }
    this.#lastListSize = listSize;
    return fields;
  }

  /** Reads a prefixed integer (§5.1) whose prefix is the low `bits` bits. */
  #int(block: Uint8Array, bits: number): number {
    const max = (1 << bits) - 1;
    let value = block[this.#pos++] & max;
    if (value < max) return value;
    for (let shift = 0;; shift += 7) {
      if (this.#pos >= block.length) {
        throw new HpackError("integer runs past the header block");
      }
      if (shift > 28) throw new HpackError("integer too long");
      const b = block[this.#pos++];
      value += (b & 0x7f) * 2 ** shift;
      if (value > MAX_INT) throw new HpackError("integer above 2^31 - 1");
      if (b < 0x80) return value;
    }
  }

  /** Reads a literal's name: an index in the prefix, or a string if 0. */
  #fieldName(block: Uint8Array, bits: number): string {
    const index = this.#int(block, bits);
    if (index === 0) return this.#string(block);
    if (index <= STATIC_COUNT) return STATIC[index - 1][0];
    return this.#entries[this.#dynamicSlot(index)][0];
  }

  /** Reads a string literal (§5.2). */
  #string(block: Uint8Array): string {
    if (this.#pos >= block.length) {
      throw new HpackError("string missing at the end of the header block");
    }
    const huffman = block[this.#pos] >= 0x80;
    const length = this.#int(block, 7);
    const start = this.#pos;
    const end = start + length;
    if (end > block.length) {
      throw new HpackError("string runs past the header block");
    }
    this.#pos = end;
    return huffman
      ? huffmanDecodeString(block, start, end)
      : latin1(block, start, end);
  }

  /** Ring slot of 0-based dynamic position `i` (0 = newest). */
  #slot(i: number): number {
    const slot = this.#newest - i;
    return slot < 0 ? slot + this.#entries.length : slot;
  }

  #dynamicSlot(index: number): number {
    const i = index - STATIC_COUNT - 1;
    if (i >= this.#count) {
      throw new HpackError(
        `index ${index} beyond the table (${
          STATIC_COUNT + this.#count
        } entries)`,
      );
    }
    return this.#slot(i);
  }

  /** Adds an entry, evicting as §4.4 says; an entry too big empties it. */
  #insert(field: HeaderField): void {
    const size = field[0].length + field[1].length + ENTRY_OVERHEAD;
    if (size > this.#capacity) {
      this.#evictTo(0);
      return;
    }
    this.#evictTo(this.#capacity - size);
    const slots = this.#entries.length;
    this.#newest = this.#newest + 1 === slots ? 0 : this.#newest + 1;
    this.#entries[this.#newest] = field;
    this.#count++;
    this.#size += size;
  }

  /** Evicts the oldest entries until the table holds at most `limit`. */
  #evictTo(limit: number): void {
    while (this.#size > limit) {
      const slot = this.#slot(this.#count - 1);
      const [name, value] = this.#entries[slot];
      this.#size -= name.length + value.length + ENTRY_OVERHEAD;
      this.#entries[slot] = NO_ENTRY;
      this.#count--;
    }
  }
}

interface StaticName {
  index: number;
  values: Map<string, number>;
}

/** Static table lookups for the encoder: first index per name, full matches. */
const STATIC_BY_NAME = new Map<string, StaticName>();
for (let i = 0; i < STATIC_COUNT; i++) {
  const [name, value] = STATIC[i];
  let entry = STATIC_BY_NAME.get(name);
  if (entry === undefined) {
    entry = { index: i + 1, values: new Map() };
    STATIC_BY_NAME.set(name, entry);
  }
  entry.values.set(value, i + 1);
}

/**
 * Encoded string literals (length prefix included) of recent header strings.
 * Request headers repeat the same few names and values (paths, authority,
 * content-type, user-agent), and copying their bytes is several times
 * cheaper than Huffman-coding them again. Bounded in entries and in string
 * length, and simply emptied when full, so peers' varied metadata cannot
 * grow it.
 */
const literals = new Map<string, Uint8Array>();
const CACHED_LITERALS = 512;
const CACHED_CHARS = 128;

/**
 * Encodes header blocks without ever touching a dynamic table.
 *
 * Being stateless it needs no coordination with the peer's table size and
 * one instance may serve many connections. A field matching a static entry
 * exactly is one indexed octet; otherwise it is a literal without indexing,
 * naming a static entry when one has the name, each string Huffman-coded
 * only when that is shorter.
 *
 * @example
 * ```ts
 * const block = new HpackEncoder().encode([
 *   [":method", "POST"],
 *   [":path", "/chat.ChatService/SendMessage"],
 *   ["content-type", "application/grpc"],
 * ]);
 * ```
 */
export class HpackEncoder {
  #buf = new Uint8Array(1024);
  #pos = 0;
  /** Most octets of the peer's table `encodeConstant()` may fill. */
  readonly #ownLimit: number;
  /** min(own limit, the peer's SETTINGS_HEADER_TABLE_SIZE). */
  #limit: number;
  /** Fields we inserted (`name\0value`) → their insertion number. */
  readonly #entries = new Map<string, number>();
  #inserted = 0;
  #used = 0;
  /** Size updates owed at the start of the next block. */
  #updates: number[] = [];
  /** The table size the peer's decoder holds us to. */
  #signaled = DEFAULT_TABLE_SIZE;
  /** Blocks of `encodeConstant()` that inserted nothing, by key. */
  readonly #constant = new Map<object, Uint8Array<ArrayBuffer>>();

  /**
   * @param options.tableSize Octets of the peer's dynamic table that
   *   {@linkcode encodeConstant} may fill (never evicted, so blocks stay
   *   valid); 0, the default, never indexes.
   */
  constructor(options: { tableSize?: number } = {}) {
    this.#ownLimit = options.tableSize ?? 0;
    this.#limit = Math.min(this.#ownLimit, DEFAULT_TABLE_SIZE);
  }

  /**
   * The peer's SETTINGS_HEADER_TABLE_SIZE. Below the size the peer's
   * decoder allows us (4096 until we say otherwise), the next block starts
   * with a size update to it (RFC 7541 §4.2); below what we use, the table
   * is emptied first (an update to 0) and the constant blocks start over.
   * A larger size changes nothing: we never need more than our own limit.
   */
  setPeerTableSize(size: number): void {
    if (this.#ownLimit === 0 || size >= this.#signaled) return;
    const limit = Math.min(this.#ownLimit, size);
    this.#constant.clear();
    if (limit < this.#used) {
      this.#entries.clear();
      this.#used = 0;
      this.#updates = [0, limit];
    } else {
      this.#updates = [limit];
    }
    this.#signaled = limit;
    this.#limit = limit;
  }

  /**
   * Encodes `fields` in order into one header block. Names must already be
   * lowercase (HTTP/2 treats uppercase names as malformed); this is not
   * checked.
   *
   * @throws {HpackError} if a name or value has a char code above 255.
   */
  encode(fields: Iterable<readonly [string, string]>): Uint8Array<ArrayBuffer> {
    this.#start();
    for (const [name, value] of fields) this.#field(name, value, false);
    return this.#buf.slice(0, this.#pos);
  }

  /**
   * The block of a constant list of fields (the same `key` always stands
   * for the same fields): each field goes into the peer's dynamic table
   * the first time, while it fits, and is one indexed octet or two after
   * that. The block is cached under `key` once it inserts nothing, so a
   * constant response costs a lookup. The block returned must be sent, in
   * order with this encoder's other blocks (the peer's table follows ours).
   * `fields` gets `key`, so a caller passes one function for every key and
   * allocates no closure per block.
   */
  encodeConstant<K extends object>(
    key: K,
    fields: (key: K) => Iterable<readonly [string, string]>,
  ): Uint8Array<ArrayBuffer> {
    if (this.#updates.length === 0) {
      const cached = this.#constant.get(key);
      if (cached !== undefined) return cached;
    }
    const before = this.#inserted;
    const update = this.#updates.length > 0;
    this.#start();
    for (const [name, value] of fields(key)) {
      this.#field(name, value, this.#limit > 0);
    }
    const block = this.#buf.slice(0, this.#pos);
    if (this.#inserted !== before) this.#constant.clear();
    else if (!update) this.#constant.set(key, block);
    return block;
  }

  #start(): void {
    this.#pos = 0;
    for (const size of this.#updates) {
      this.#reserve(5);
      this.#int(0x20, 5, size);
    }
    this.#updates.length = 0;
  }

  #field(name: string, value: string, index: boolean): void {
    const known = STATIC_BY_NAME.get(name);
    const full = known?.values.get(value);
    if (full !== undefined) {
      this.#reserve(5);
      this.#int(0x80, 7, full);
      return;
    }
    if (index) {
      const key = name + "\0" + value;
      const n = this.#entries.get(key);
      if (n !== undefined) {
        this.#reserve(5);
        this.#int(0x80, 7, STATIC_COUNT + this.#inserted - n + 1);
        return;
      }
      const size = name.length + value.length + ENTRY_OVERHEAD;
      if (this.#used + size <= this.#limit) {
        this.#used += size;
        this.#entries.set(key, ++this.#inserted);
        this.#literal(0x40, 6, known?.index, name, value);
        return;
      }
    }
    this.#literal(0x00, 4, known?.index, name, value);
  }

  /** A literal field: `first` is 0x40 (insert) or 0x00 (not indexed). */
  #literal(
    first: number,
    bits: number,
    nameIndex: number | undefined,
    name: string,
    value: string,
  ): void {
    this.#reserve(5);
    if (nameIndex !== undefined) this.#int(first, bits, nameIndex);
    else {
      this.#buf[this.#pos++] = first;
      this.#string(name);
    }
    this.#string(value);
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#pos + n));
    grown.set(this.#buf.subarray(0, this.#pos));
    this.#buf = grown;
  }

  /** Writes `value` with an N-bit prefix, OR-ing `first` into the first octet. */
  #int(first: number, bits: number, value: number): void {
    const max = (1 << bits) - 1;
    const buf = this.#buf;
    if (value < max) {
      buf[this.#pos++] = first | value;
      return;
    }
    buf[this.#pos++] = first | max;
    value -= max;
    while (value >= 0x80) {
      buf[this.#pos++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    buf[this.#pos++] = value;
  }

  #string(s: string): void {
    const cached = literals.get(s);
    if (cached !== undefined) {
      this.#reserve(cached.length);
      const buf = this.#buf;
      let pos = this.#pos;
      for (let i = 0; i < cached.length; i++) buf[pos++] = cached[i];
      this.#pos = pos;
      return;
    }
    const start = this.#pos;
    const huffmanLength = huffmanStringLength(s);
    if (huffmanLength < 0) {
      throw new HpackError(
        `header string has a char code above 255: ${JSON.stringify(s)}`,
      );
    }
    if (huffmanLength < s.length) {
      this.#reserve(5 + huffmanLength);
      this.#int(0x80, 7, huffmanLength);
      this.#pos = huffmanEncodeStringInto(s, this.#buf, this.#pos);
    } else {
      this.#reserve(5 + s.length);
      this.#int(0x00, 7, s.length);
      const buf = this.#buf;
      let pos = this.#pos;
      for (let i = 0; i < s.length; i++) buf[pos++] = s.charCodeAt(i);
      this.#pos = pos;
    }
    if (s.length <= CACHED_CHARS) {
      if (literals.size >= CACHED_LITERALS) literals.clear();
      literals.set(s, this.#buf.slice(start, this.#pos));
    }
  }
}
