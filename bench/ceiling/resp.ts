/**
 * The least RESP2 client a measuring tool needs: commands out as arrays of
 * bulk strings, replies and PUB/SUB pushes in, on a raw `Deno.connect`
 * socket. For `deno_listen_h2.ts --redis` only (the runtime's ceiling with
 * one Redis round trip per acknowledgement): it trusts Redis, keeps no
 * reconnect, no timeouts and no offline queue. The product uses node-redis
 * (server/broker/).
 *
 * @module
 */
import { concatBytes } from "../../protocol/bytes.ts";
import { ReadBuffer } from "../../http2/read_buffer.ts";

/** A decoded RESP2 value: bulk strings stay bytes. */
export type RespValue =
  | Uint8Array
  | string
  | number
  | null
  | RespError
  | RespValue[];

/** An error reply (`-ERR ...`). */
export class RespError extends Error {}

const CRLF = new Uint8Array([13, 10]);
const utf8 = new TextEncoder();
const text = new TextDecoder();

/** The bytes of one command. */
export function encodeCommand(
  args: readonly (string | Uint8Array)[],
): Uint8Array {
  const parts: Uint8Array[] = [utf8.encode(`*${args.length}\r\n`)];
  for (const a of args) {
    const bytes = typeof a === "string" ? utf8.encode(a) : a;
    parts.push(utf8.encode(`$${bytes.length}\r\n`), bytes, CRLF);
  }
  return concatBytes(parts);
}

/** Where a value ends in `buf` from `at`, and the value; undefined if cut. */
function parse(
  buf: Uint8Array,
  at: number,
  end: number,
): [RespValue, number] | undefined {
  if (at >= end) return undefined;
  const nl = buf.indexOf(10, at);
  if (nl < 0 || nl >= end) return undefined;
  const line = text.decode(buf.subarray(at + 1, nl - 1));
  const next = nl + 1;
  switch (buf[at]) {
    case 43: // +
      return [line, next];
    case 45: // -
      return [new RespError(line), next];
    case 58: // :
      return [Number(line), next];
    case 36: { // $
      const n = Number(line);
      if (n < 0) return [null, next];
      if (next + n + 2 > end) return undefined;
      return [buf.slice(next, next + n), next + n + 2];
    }
    case 42: { // *
      const n = Number(line);
      if (n < 0) return [null, next];
      const items: RespValue[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, p, end);
        if (r === undefined) return undefined;
        items.push(r[0]);
        p = r[1];
      }
      return [items, p];
    }
    default:
      throw new Error(`resp: unexpected byte ${buf[at]}`);
  }
}

/**
 * One connection: `send()` queues a command (written at the end of the
 * current turn, all queued commands in one write) and `onValue` gets every
 * value read, in order: replies and, on a subscribed connection, pushes.
 */
export class RespConnection {
  #out: Uint8Array[] = [];
  #writing = false;
  #scheduled = false;

  private constructor(
    readonly conn: Deno.TcpConn,
    readonly onValue: (v: RespValue) => void,
  ) {}

  static async open(
    hostname: string,
    port: number,
    onValue: (v: RespValue) => void,
  ): Promise<RespConnection> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    const c = new RespConnection(conn, onValue);
    c.#readLoop();
    return c;
  }

  send(args: readonly (string | Uint8Array)[]): void {
    this.#out.push(encodeCommand(args));
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        void this.#flush();
      });
    }
  }

  async #flush(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#out.length > 0) {
        const parts = this.#out;
        this.#out = [];
        const chunk = parts.length === 1 ? parts[0] : concatBytes(parts);
        let off = 0;
        while (off < chunk.length) {
          off += await this.conn.write(chunk.subarray(off));
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  async #readLoop(): Promise<void> {
    const rb = new ReadBuffer(1 << 16, 4096);
    try {
      while (true) {
        const n = await this.conn.read(rb.space());
        if (n === null) break;
        rb.filled(n);
        let p = rb.start;
        while (true) {
          const r = parse(rb.buf, p, rb.end);
          if (r === undefined) break;
          p = r[1];
          this.onValue(r[0]);
        }
        rb.consumed(p);
      }
    } catch (e) {
      // Closed by close(): a read in flight ends one of these two ways.
      if (
        !(e instanceof Deno.errors.BadResource ||
          e instanceof Deno.errors.Interrupted)
      ) throw e;
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/** A bulk string or simple string as text. */
export function asText(v: RespValue): string {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return text.decode(v);
  throw new Error(`resp: not a string: ${String(v)}`);
}
