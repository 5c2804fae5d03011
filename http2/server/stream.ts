/**
 * One request stream of the core's own HTTP/2 server, shaped like the part
 * of `node:http2`'s `ServerHttp2Stream` that grpc-js's server and our direct
 * paths use.
 *
 * Why a look-alike: grpc-js runs every call on a `ServerHttp2Stream` it gets
 * from its http2 server's 'stream' event. Handing it this object instead
 * keeps grpc-js's whole call machinery (metadata, deadlines, interceptors,
 * the handler API) while the bytes move through our connection code rather
 * than Deno's `node:http2`, which costs about three times the CPU per call
 * (BENCHMARKS.md, "The runtime's ceiling") and aborts the process on some
 * client GOAWAYs (docs/goaway.md).
 *
 * What is kept from Node: a readable side that starts flowing with the first
 * 'data' listener unless paused, 'end' only after the last chunk was taken,
 * `respond()`, `write(chunk, cb)` returning false above the high-water mark
 * and 'drain' after it, `end()`, 'wantTrailers' + `sendTrailers()`,
 * `close(code)` (RST_STREAM), 'close' once per stream, `rstCode`.
 * What is not: the Duplex class itself (no pipe(), no object mode), push
 * streams, priority, `respondWithFile`, per-stream timeouts.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import process from "node:process";
import type { EnvelopeMeter } from "../../protocol/envelope.ts";
import { ErrorCode } from "../../protocol/http2/frames.ts";
import { Fifo } from "./fifo.ts";
import type { OutgoingHeaders, StreamHost } from "./stream_host.ts";

export type {
  IncomingHeaders,
  OutgoingHeaders,
  StreamHost,
} from "./stream_host.ts";

/** A queued outgoing chunk and its write callback. */
interface Pending {
  data: Uint8Array;
  cb: ((err?: Error | null) => void) | undefined;
}

/** Payloads below this are joined while a stream is paused. */
const SMALL_CHUNK = 1024;
const TAIL_BYTES = 16 * 1024;
/** Node's default `writableHighWaterMark` of an HTTP/2 stream. */
const HIGH_WATER_MARK = 16 * 1024;
const { NO_ERROR, CANCEL } = ErrorCode;
const EMPTY = new Uint8Array(0);

type WriteCallback = (err?: Error | null) => void;

/**
 * Takes a stream's request chunks and its end in place of 'data' and
 * 'end' listeners: the direct call paths set one object per call instead
 * of adding and removing listeners (server/grpcjs/one_request.ts).
 */
export interface StreamReader {
  onData(chunk: Buffer): void;
  onEnd(): void;
}
type Listener = Parameters<EventEmitter["on"]>[1];

/** One server-side HTTP/2 stream; see the module doc. */
export class H2ServerStream extends EventEmitter {
  readonly id: number;
  readonly session: unknown;
  readonly writableHighWaterMark = HIGH_WATER_MARK;
  /** The RST_STREAM code that ended the stream, once closed. */
  rstCode: number | undefined;
  headersSent = false;
  destroyed = false;
  closed = false;
  writableEnded = false;

  // Receive side, read by the connection.
  /** Bytes the peer may still send on this stream. */
  recvWindow: number;
  /** Bytes taken by the reader and not yet given back in a WINDOW_UPDATE. */
  recvUnacked = 0;
  /** END_STREAM (or trailers) received. */
  remoteEnded = false;
  /** Body bytes the request's content-length still promises; -1: none. */
  contentLeft = -1;
  /** When its HEADERS came (ms since the epoch, per read). */
  openedAt = 0;
  /** Tracks gRPC message boundaries when a request budget is kept. */
  meter: EnvelopeMeter | undefined;
  /** Request bytes of the unfinished message, charged to the budget. */
  unfinishedBytes = 0;

  // Send side, read and advanced by the connection's pump.
  /** Bytes we may still send on this stream (the peer's window). */
  sendWindow: number;
  readonly pending: Fifo<Pending> = new Fifo();
  /** Offset into `pending[0].data` already sent. */
  pendingOffset = 0;
  /** Bytes in `pending` not yet sent. */
  writableLength = 0;
  /** END_STREAM queued or sent. */
  localEnded = false;

  readonly #host: StreamHost;
  #queue: Fifo<Buffer> = new Fifo();
  /** Small payloads joined while paused; `#tailLength` bytes used. */
  #tail: Buffer | undefined;
  #tailLength = 0;
  /** Trailers given before the pending data went out. */
  #trailers: OutgoingHeaders | undefined;
  #flowing: boolean | null = null;
  #delivering = false;
  #endEmitted = false;
  #waitForTrailers = false;
  #finished = false;
  #owesDrain = false;
  /**
   * The current read's payloads in `#readBuf` (EMPTY: none): the first one
   * `[#readFrom, #readTo)`, any others as `[from, to)` pairs (most requests
   * have one DATA frame: no array for them).
   */
  #readBuf: Uint8Array = EMPTY;
  #readFrom = 0;
  #readTo = 0;
  #readMore: number[] | undefined;
  #readBytes = 0;
  /** Takes the chunks instead of 'data' events (see readWith()). */
  #reader: StreamReader | undefined;

  constructor(
    host: StreamHost,
    id: number,
    recvWindow: number,
    sendWindow: number,
  ) {
    super();
    this.#host = host;
    this.session = host.session;
    this.id = id;
    this.recvWindow = recvWindow;
    this.sendWindow = sendWindow;
  }

  // --- readable side --------------------------------------------------------

  override on(
    event: string | symbol,
    listener: Listener,
  ): this {
    super.on(event, listener);
    if (event === "data" && this.#flowing === null) this.resume();
    return this;
  }

  override addListener(
    event: string | symbol,
    listener: Listener,
  ): this {
    return this.on(event, listener);
  }

  /**
   * Hands the request's chunks to `reader.onData` instead of emitting
   * 'data', and its end to `reader.onEnd` before 'end' is emitted; starts
   * the flow as a first 'data' listener does. `undefined` goes back to
   * events.
   */
  readWith(reader: StreamReader | undefined): void {
    this.#reader = reader;
    if (reader !== undefined && this.#flowing === null) this.resume();
  }

  pause(): this {
    this.#flowing = false;
    return this;
  }

  resume(): this {
    if (this.#flowing === true) return this;
    this.#flowing = true;
    if (this.#queue.length > 0 || this.#tailLength > 0 || this.remoteEnded) {
      process.nextTick(() => this.#deliver());
    }
    return this;
  }

  /**
   * A DATA payload arrived (the connection has checked the windows):
   * `buf[from, to)`, a view of the connection's read buffer. It stays a
   * view until the connection has parsed the whole read and calls
   * {@linkcode takeRead}: a client streaming small messages sends one DATA
   * frame per message, and joining a read's frames makes one copy, one
   * 'data' event and one metering of them instead of one per message.
   * Returns true for the stream's first payload of this read.
   */
  push(buf: Uint8Array, from: number, to: number): boolean {
    this.recvWindow -= to - from;
    this.#readBytes += to - from;
    if (this.#readBuf === EMPTY) {
      this.#readBuf = buf;
      this.#readFrom = from;
      this.#readTo = to;
      return true;
    }
    (this.#readMore ??= []).push(from, to);
    return false;
  }

  /**
   * This read's payloads joined into one chunk of their own (undefined if
   * none); the views into the read buffer are dropped.
   */
  takeRead(): Buffer | undefined {
    const buf = this.#readBuf;
    if (buf === EMPTY) return undefined;
    const chunk = Buffer.allocUnsafe(this.#readBytes);
    chunk.set(buf.subarray(this.#readFrom, this.#readTo));
    const more = this.#readMore;
    if (more !== undefined) {
      let at = this.#readTo - this.#readFrom;
      for (let i = 0; i < more.length; i += 2) {
        chunk.set(buf.subarray(more[i], more[i + 1]), at);
        at += more[i + 1] - more[i];
      }
    }
    this.#clearRead();
    return chunk;
  }

  #clearRead(): void {
    this.#readBuf = EMPTY;
    this.#readBytes = 0;
    if (this.#readMore !== undefined) this.#readMore.length = 0;
  }

  /**
   * A read's payload (from {@linkcode takeRead}), once the connection has
   * metered it: emitted now if the stream is flowing, queued otherwise.
   *
   * While the stream is paused, small payloads are joined into shared
   * 16 KiB chunks: a client sending one-byte frames must not make a paused
   * stream hold a Buffer object per byte of its window.
   */
  accept(chunk: Buffer): void {
    const n = chunk.byteLength;
    if (
      this.#flowing === true && this.#queue.length === 0 &&
      this.#tailLength === 0 && !this.#delivering
    ) {
      this.#host.consumed(this, n);
      if (this.#reader !== undefined) this.#reader.onData(chunk);
      else this.emit("data", chunk);
      return;
    }
    if (n >= SMALL_CHUNK) {
      this.#closeTail();
      this.#queue.push(chunk);
      return;
    }
    if (this.#tail === undefined || this.#tailLength + n > TAIL_BYTES) {
      this.#closeTail();
      this.#tail = Buffer.allocUnsafe(TAIL_BYTES);
    }
    this.#tail.set(chunk, this.#tailLength);
    this.#tailLength += n;
  }

  /** Moves the joined small payloads into the queue. */
  #closeTail(): void {
    if (this.#tailLength === 0) return;
    this.#queue.push(this.#tail!.subarray(0, this.#tailLength));
    this.#tail = undefined;
    this.#tailLength = 0;
  }

  /**
   * Drops unread data of a stream that ended, giving its bytes back to the
   * connection window (they were counted against it when they arrived).
   */
  #discardUnread(): void {
    this.#closeTail();
    let bytes = this.#readBytes;
    this.#clearRead();
    if (this.#queue.length > 0) {
      for (const chunk of this.#queue.drain()) bytes += chunk.byteLength;
    }
    if (bytes > 0) this.#host.consumed(this, bytes);
  }

  /**
   * END_STREAM arrived. 'end' follows after the rest of the socket read is
   * parsed, as with Node: a RST_STREAM right behind the END_STREAM (a client
   * cancelling) turns the request into a cancelled one, not a complete one.
   * Returns true when the connection is to call {@linkcode endOfRead} once
   * the read is parsed (the stream is flowing); otherwise `resume()` ends it
   * later.
   */
  pushEnd(): boolean {
    this.remoteEnded = true;
    return this.#flowing === true;
  }

  /**
   * The read that brought END_STREAM is parsed (and its DATA delivered):
   * 'end' now, unless the stream was reset or paused meanwhile. The
   * connection calls it in place of a `nextTick` per request: the same
   * moment, after every frame of the read.
   */
  endOfRead(): void {
    this.#deliver();
  }

  #deliver(): void {
    if (this.destroyed) return;
    this.#closeTail();
    this.#delivering = true;
    try {
      while (this.#flowing === true && this.#queue.length > 0) {
        const chunk = this.#queue.shift()!;
        this.#host.consumed(this, chunk.byteLength);
        if (this.#reader !== undefined) this.#reader.onData(chunk);
        else this.emit("data", chunk);
        if (this.destroyed) return;
      }
    } finally {
      this.#delivering = false;
    }
    if (
      this.#flowing === true && this.remoteEnded && this.#queue.length === 0 &&
      !this.#endEmitted
    ) {
      this.#endEmitted = true;
      this.#reader?.onEnd();
      this.emit("end");
    }
  }

  // --- writable side --------------------------------------------------------

  respond(
    headers: OutgoingHeaders = { ":status": 200 },
    options: { endStream?: boolean; waitForTrailers?: boolean } = {},
  ): void {
    if (this.destroyed || this.headersSent) return;
    this.headersSent = true;
    this.#waitForTrailers = options.waitForTrailers === true;
    const endStream = options.endStream === true;
    // As in Node: no :status means 200.
    if (headers[":status"] === undefined) {
      headers = { ...headers, ":status": 200 };
    }
    this.#host.sendHeaders(this, headers, endStream);
    if (endStream) {
      this.writableEnded = true;
      this.#localEnd();
    }
  }

  write(chunk: Uint8Array, cb?: WriteCallback): boolean;
  write(chunk: Uint8Array, encoding?: string, cb?: WriteCallback): boolean;
  write(
    chunk: Uint8Array,
    encodingOrCb?: string | WriteCallback,
    maybeCb?: WriteCallback,
  ): boolean {
    const cb = typeof encodingOrCb === "function" ? encodingOrCb : maybeCb;
    if (this.destroyed || this.writableEnded) {
      if (cb) process.nextTick(cb, new Error("write after end"));
      return false;
    }
    if (!this.headersSent) this.respond();
    if (chunk.byteLength > 0 || cb) {
      this.pending.push({ data: chunk, cb });
      this.writableLength += chunk.byteLength;
      this.#host.pump(this);
    }
    const room = this.writableLength < HIGH_WATER_MARK;
    if (!room) this.#owesDrain = true;
    return room;
  }

  end(chunk?: Uint8Array | WriteCallback, cb?: WriteCallback): this {
    if (typeof chunk === "function") {
      cb = chunk;
      chunk = undefined;
    }
    if (this.destroyed || this.writableEnded) return this;
    if (chunk !== undefined) this.write(chunk);
    if (!this.headersSent) this.respond();
    this.writableEnded = true;
    if (cb) this.once("finish", cb);
    this.#host.pump(this);
    return this;
  }

  /** Called by the connection when `pending` went empty after `end()`. */
  allSent(): void {
    if (this.localEnded || this.#finished) return;
    this.#finished = true;
    process.nextTick(() => this.emit("finish"));
    if (this.#trailers !== undefined) {
      this.#host.sendHeaders(this, this.#trailers, true);
      this.#trailers = undefined;
      this.#localEnd();
      return;
    }
    if (this.#waitForTrailers) {
      // Node asks for trailers after the last DATA frame, asynchronously.
      process.nextTick(() => {
        if (this.destroyed || this.localEnded) return;
        this.emit("wantTrailers");
        // Nobody sent trailers: end the stream without them.
        if (!this.localEnded && !this.destroyed) {
          this.#host.sendEnd(this);
          this.#localEnd();
        }
      });
      return;
    }
    this.#host.sendEnd(this);
    this.#localEnd();
  }

  /** Called by the connection after frames of a pending chunk went out. */
  sentChunk(cb: WriteCallback | undefined): void {
    if (cb) process.nextTick(cb);
    if (this.#owesDrain && this.writableLength < HIGH_WATER_MARK) {
      this.#owesDrain = false;
      process.nextTick(() => {
        if (!this.destroyed) this.emit("drain");
      });
    }
  }

  sendTrailers(headers: OutgoingHeaders): void {
    if (this.destroyed || this.localEnded) return;
    if (this.pending.length > 0) {
      // Trailers go after the data already written.
      this.#trailers = headers;
      this.writableEnded = true;
      return;
    }
    this.#host.sendHeaders(this, headers, true);
    this.#localEnd();
  }

  /** Resets the stream with RST_STREAM `code` (default NO_ERROR). */
  close(code: number = NO_ERROR, callback?: () => void): void {
    if (this.destroyed) return;
    this.#host.reset(this, code);
    this.abort(code);
    if (callback) this.once("close", callback);
  }

  /** Node's destroy(): reset with CANCEL if the stream is still open. */
  destroy(): this {
    this.close(CANCEL);
    return this;
  }

  /**
   * Ends the stream without sending anything (the peer reset it, the
   * connection died, or `close()` sent the RST_STREAM already).
   */
  abort(code: number): void {
    if (this.destroyed) return;
    this.rstCode = code;
    this.destroyed = true;
    this.writableEnded = true;
    this.#discardUnread();
    const callbacks = this.pending.drain().filter((p) => p.cb).map((p) =>
      p.cb!
    );
    this.writableLength = 0;
    this.#host.released(this);
    const error = new Error(`stream reset with code ${code}`);
    for (const cb of callbacks) process.nextTick(cb, error);
    this.#emitClose();
  }

  #localEnd(): void {
    this.localEnded = true;
    // The response is complete before the request (RFC 9113 §8.1): tell
    // the client to stop sending.
    if (!this.remoteEnded) this.#host.reset(this, NO_ERROR);
    this.#release();
  }

  #release(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.rstCode = NO_ERROR;
    this.#discardUnread();
    this.#host.released(this);
    this.#emitClose();
  }

  #emitClose(): void {
    this.closed = true;
    process.nextTick(() => this.emit("close"));
  }
}
