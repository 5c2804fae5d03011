/**
 * One HTTP/2 server connection (RFC 9113, h2c with prior knowledge) over a
 * Deno TCP socket: the core's transport under grpc-js.
 *
 * It owns the preface and SETTINGS exchange, the stream table, the read loop
 * (one reusable buffer, many frames per read, no object per frame), per-turn
 * batched writes (http2/frame_writer.ts), flow control both ways, PING,
 * GOAWAY and RST_STREAM. Streams are {@linkcode H2ServerStream}s, handed to
 * `onStream` with Node-style headers; gRPC lives above, in grpc-js.
 *
 * Limits, each with the RFC's answer: frames above 16 KiB
 * (FRAME_SIZE_ERROR), header blocks above `maxHeaderListSize` (the HPACK
 * decoder's COMPRESSION_ERROR; a CONTINUATION flood ends with
 * ENHANCE_YOUR_CALM), streams above `maxConcurrentStreams` (REFUSED_STREAM),
 * data beyond a window (FLOW_CONTROL_ERROR), and a peer that makes us queue
 * control-frame answers it never reads (ENHANCE_YOUR_CALM). Receive windows
 * reopen only as the application reads, so a paused stream holds at most
 * `streamWindow` bytes and a connection at most `connectionWindow`.
 *
 * A client's GOAWAY is taken as "no more streams from me": open streams run
 * to their end, then the connection closes. (Deno's `node:http2` server can
 * abort the process on one; this is the reason the GOAWAY guard and the
 * supervisor exist for the `node` transport.)
 *
 * @module
 */
import { HpackDecoder, HpackEncoder } from "../../protocol/http2/hpack.ts";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  FRAME_HEADER_BYTES,
  FrameType,
  goawayFrame,
  H2ConnectionError,
  MAX_WINDOW,
  readUint32,
  Setting,
  settingsFrame,
  windowUpdateFrame,
  writeFrameHeader,
} from "../../protocol/http2/frames.ts";
import {
  eachFrame,
  flowControlError,
  frameSizeError,
  type FrameVisitor,
  HeaderBlockReader,
  paddedEnd,
  protocolError,
  readSettings,
  windowIncrement,
} from "../../protocol/http2/frame_parse.ts";
import { FrameWriter } from "../../http2/frame_writer.ts";
import { ReadBuffer } from "../../http2/read_buffer.ts";
import {
  H2ServerStream,
  type IncomingHeaders,
  type OutgoingHeaders,
  type StreamHost,
} from "./stream.ts";
import { toIncomingHeaders } from "./headers.ts";

/** Tuning and limits of a server connection. */
export interface H2ServerOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS; more are refused. */
  maxConcurrentStreams: number;
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: unread bytes a stream may hold. */
  streamWindow: number;
  /**
   * Unread bytes the whole connection may hold. Windows reopen only as
   * handlers read, so this bounds a connection's buffered input; it is
   * 16 streams' windows, so a few paused streams (a Chat whose client reads
   * its echoes slowly) do not stall the other calls of the connection.
   */
  connectionWindow: number;
  /** Largest decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize: number;
  /** Bytes queued for the socket above which streams wait for it. */
  outputLimit: number;
  /**
   * How long a new connection has to send its preface and SETTINGS; a
   * socket that stays silent (or sends something else) is closed after it.
   */
  handshakeTimeoutMs: number;
}

/** The defaults: gRPC-sized windows, Node's header list limit. */
export const DEFAULT_H2_SERVER_OPTIONS: Readonly<H2ServerOptions> = Object
  .freeze({
    maxConcurrentStreams: 1000,
    streamWindow: 1024 * 1024,
    connectionWindow: 16 * 1024 * 1024,
    maxHeaderListSize: 64 * 1024,
    outputLimit: 1024 * 1024,
    handshakeTimeoutMs: 10_000,
  });

/** What a connection reports to its listener. */
export interface ConnectionOwner {
  /** A new request stream; throwing resets it with INTERNAL_ERROR. */
  onStream(stream: H2ServerStream, headers: IncomingHeaders): void;
  /** The socket is closed and every stream is gone. */
  closed(connection: H2ServerConnection): void;
  /** An exception thrown by `onStream`. */
  onError?(error: unknown): void;
}

const READ_BYTES = 64 * 1024;
/** Stream resets a peer may send in a burst, and refilled per ms (100/s). */
const RESET_BURST = 1000;
const RESETS_PER_MS = 0.1;
const MIN_READ_ROOM = FRAME_HEADER_BYTES + DEFAULT_MAX_FRAME_SIZE;
/** How long a closing connection waits for its last frames and the EOF. */
const LINGER_MS = 1000;

/** One accepted connection; see the module doc. */
export class H2ServerConnection implements StreamHost {
  readonly session: {
    socket: { remoteAddress: string; remotePort: number };
  };
  readonly #conn: Deno.Conn;
  readonly #opts: Readonly<H2ServerOptions>;
  readonly #owner: ConnectionOwner;
  readonly #writer: FrameWriter;
  readonly #decoder: HpackDecoder;
  readonly #encoder = new HpackEncoder();
  readonly #streams = new Map<number, H2ServerStream>();
  /** Streams with pending data that a window or the socket holds back. */
  readonly #blocked = new Set<H2ServerStream>();
  #lastStreamId = 0;
  #settled = false;
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  #sendWindow = DEFAULT_WINDOW;
  #recvWindow: number;
  #recvUnacked = 0;
  readonly #block: HeaderBlockReader;
  #goawaySent = false;
  #peerGoaway = false;
  #dead = false;
  #finishing = false;
  #linger: ReturnType<typeof setTimeout> | undefined;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #reported = false;
  /** Set while the read loop waits for the socket to take our output. */
  #readerWaiting: (() => void) | undefined;
  /** Resets the peer may still send (a token bucket; see #onRstStream). */
  readonly #resetBurst: number;
  #resetTokens: number;
  #resetRefilled = Date.now();

  constructor(
    conn: Deno.Conn,
    options: Readonly<H2ServerOptions>,
    owner: ConnectionOwner,
  ) {
    this.#conn = conn;
    this.#opts = options;
    this.#owner = owner;
    const remote = conn.remoteAddr as Deno.NetAddr;
    this.session = {
      socket: { remoteAddress: remote.hostname, remotePort: remote.port },
    };
    this.#decoder = new HpackDecoder(4096, {
      maxHeaderListSize: options.maxHeaderListSize,
    });
    this.#recvWindow = options.connectionWindow;
    this.#block = new HeaderBlockReader(2 * options.maxHeaderListSize);
    // Cancelling every stream at once is normal; more than that is not.
    this.#resetBurst = Math.max(RESET_BURST, options.maxConcurrentStreams);
    this.#resetTokens = this.#resetBurst;
    this.#writer = new FrameWriter({
      onWriteError: () => this.#lost(),
      onWritten: () => this.#onWritten(),
    });
  }

  /** Open streams. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Serves the connection until it closes. */
  async serve(): Promise<void> {
    const w = this.#writer;
    w.bytes(settingsFrame([
      [Setting.MAX_CONCURRENT_STREAMS, this.#opts.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.#opts.streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, this.#opts.maxHeaderListSize],
      [Setting.ENABLE_PUSH, 0],
    ]));
    if (this.#opts.connectionWindow > DEFAULT_WINDOW) {
      w.bytes(
        windowUpdateFrame(0, this.#opts.connectionWindow - DEFAULT_WINDOW),
      );
    }
    w.attach(this.#conn);
    this.#handshakeTimer = setTimeout(
      () => this.destroy(),
      this.#opts.handshakeTimeoutMs,
    );
    await this.#readLoop();
  }

  /**
   * Graceful close: GOAWAY(NO_ERROR) with the last stream we took; streams
   * already open run to their end, then the socket closes.
   */
  drain(): void {
    if (this.#dead || this.#goawaySent) return;
    this.#goawaySent = true;
    this.#writer.bytes(goawayFrame(this.#lastStreamId, ErrorCode.NO_ERROR));
    if (this.#streams.size === 0) this.#finish();
  }

  /** Closes now: every open stream ends as cancelled. */
  destroy(): void {
    this.#abortAll(ErrorCode.CANCEL);
    this.#dead = true;
    this.#wakeReader();
    this.#writer.kill();
    this.#closeSocket();
  }

  // --- StreamHost ------------------------------------------------------------

  sendHeaders(
    stream: H2ServerStream,
    headers: OutgoingHeaders,
    endStream: boolean,
  ): void {
    if (this.#dead) return;
    this.#writer.headerBlock(
      stream.id,
      this.#encodeHeaders(headers),
      this.#peerMaxFrame,
      endStream,
    );
  }

  pump(s: H2ServerStream): void {
    if (this.#dead) return;
    const w = this.#writer;
    const pending = s.pending;
    while (pending.length > 0) {
      const p = pending.peek()!;
      const left = p.data.byteLength - s.pendingOffset;
      if (left > 0) {
        const room = Math.min(s.sendWindow, this.#sendWindow);
        if (room <= 0 || w.buffered >= this.#opts.outputLimit) {
          this.#blocked.add(s);
          return;
        }
        const n = Math.min(left, room, this.#peerMaxFrame);
        const at = w.reserve(FRAME_HEADER_BYTES + n);
        const buf = w.buf;
        writeFrameHeader(buf, at, n, FrameType.DATA, 0, s.id);
        buf.set(
          n === p.data.byteLength
            ? p.data
            : p.data.subarray(s.pendingOffset, s.pendingOffset + n),
          at + FRAME_HEADER_BYTES,
        );
        s.pendingOffset += n;
        s.sendWindow -= n;
        this.#sendWindow -= n;
        s.writableLength -= n;
        if (n < left) continue;
      }
      pending.shift();
      s.pendingOffset = 0;
      s.sentChunk(p.cb);
    }
    this.#blocked.delete(s);
    if (s.writableEnded && !s.localEnded && !s.destroyed) s.allSent();
  }

  sendEnd(stream: H2ServerStream): void {
    if (!this.#dead) {
      this.#writer.header(0, FrameType.DATA, Flag.END_STREAM, stream.id);
    }
  }

  reset(stream: H2ServerStream, code: number): void {
    if (!this.#dead) {
      this.#writer.frame32(FrameType.RST_STREAM, stream.id, code);
    }
  }

  consumed(stream: H2ServerStream, bytes: number): void {
    if (this.#dead) return;
    if (!stream.remoteEnded && !stream.destroyed) {
      stream.recvUnacked += bytes;
      if (stream.recvUnacked >= this.#opts.streamWindow / 2) {
        this.#writer.frame32(
          FrameType.WINDOW_UPDATE,
          stream.id,
          stream.recvUnacked,
        );
        stream.recvWindow += stream.recvUnacked;
        stream.recvUnacked = 0;
      }
    }
    this.#giveBack(bytes);
  }

  released(stream: H2ServerStream): void {
    if (this.#streams.get(stream.id) !== stream) return;
    this.#streams.delete(stream.id);
    this.#blocked.delete(stream);
    if ((this.#goawaySent || this.#peerGoaway) && this.#streams.size === 0) {
      this.#finish();
    }
  }

  // --- reading ---------------------------------------------------------------

  async #readLoop(): Promise<void> {
    const conn = this.#conn;
    const rb = new ReadBuffer(READ_BYTES, MIN_READ_ROOM);
    let preface = false;
    while (true) {
      // A peer that sends faster than it reads our answers waits for them:
      // reading stops while the socket has more than twice the output
      // limit queued, so every reply frame is bounded by TCP backpressure.
      if (!this.#dead && this.#writer.buffered > 2 * this.#opts.outputLimit) {
        await new Promise<void>((resolve) => this.#readerWaiting = resolve);
      }
      let n: number | null;
      try {
        n = await conn.read(rb.space());
      } catch {
        n = null;
      }
      if (n === null) break;
      // After a connection error, reading goes on only to see the EOF.
      if (this.#dead) continue;
      rb.filled(n);
      try {
        if (!preface) {
          if (rb.end - rb.start < CLIENT_PREFACE.byteLength) continue;
          for (let i = 0; i < CLIENT_PREFACE.byteLength; i++) {
            if (rb.buf[rb.start + i] !== CLIENT_PREFACE[i]) {
              throw protocolError("not an HTTP/2 client preface");
            }
          }
          rb.consumed(rb.start + CLIENT_PREFACE.byteLength);
          preface = true;
        }
        rb.consumed(
          eachFrame(rb.buf, rb.start, rb.end, this.#live, this.#onFrame),
        );
      } catch (e) {
        rb.clear();
        this.#connectionError(e);
      }
    }
    this.#lost();
  }

  readonly #live = () => !this.#dead;

  readonly #onFrame: FrameVisitor = (type, flags, id, buf, at, len) => {
    if (this.#block.stream !== 0 && type !== FrameType.CONTINUATION) {
      throw protocolError("expected CONTINUATION");
    }
    if (!this.#settled && type !== FrameType.SETTINGS) {
      throw protocolError("the client preface must end with SETTINGS");
    }
    switch (type) {
      case FrameType.DATA:
        this.#onData(flags, id, buf, at, len);
        break;
      case FrameType.HEADERS:
        this.#onHeaders(flags, id, buf, at, len);
        break;
      case FrameType.PRIORITY:
        if (id === 0) throw protocolError("PRIORITY on stream 0");
        if (len !== 5) this.#rstById(id, ErrorCode.FRAME_SIZE_ERROR);
        break;
      case FrameType.RST_STREAM:
        this.#onRstStream(id, buf, at, len);
        break;
      case FrameType.SETTINGS:
        this.#onSettings(flags, id, buf, at, len);
        break;
      case FrameType.PUSH_PROMISE:
        throw protocolError("PUSH_PROMISE from a client");
      case FrameType.PING:
        this.#onPing(flags, id, buf, at, len);
        break;
      case FrameType.GOAWAY:
        this.#onGoaway(id, len);
        break;
      case FrameType.WINDOW_UPDATE:
        this.#onWindowUpdate(id, buf, at, len);
        break;
      case FrameType.CONTINUATION:
        this.#onContinuation(flags, id, buf, at, len);
        break;
      default:
        break; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  };

  #onData(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    if (id === 0) throw protocolError("DATA on stream 0");
    // The whole frame, padding included, counts against both windows.
    if (len > this.#recvWindow) {
      throw flowControlError("DATA beyond the connection window");
    }
    this.#recvWindow -= len;
    const to = paddedEnd(flags, buf, at, len, "DATA");
    const from = flags & Flag.PADDED ? at + 1 : at;
    const s = this.#streams.get(id);
    if (s === undefined || s.remoteEnded) {
      if (id > this.#lastStreamId) {
        throw protocolError(`DATA on idle stream ${id}`);
      }
      // A stream we reset or finished: late frames are dropped.
      this.#giveBack(len);
      if (s !== undefined) this.#streamError(s, ErrorCode.STREAM_CLOSED);
      return;
    }
    if (len > s.recvWindow) {
      this.#giveBack(len);
      this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    const padding = len - (to - from);
    if (padding > 0) {
      s.recvWindow -= padding;
      this.consumed(s, padding);
    }
    if (to > from) s.push(buf.subarray(from, to));
    if ((flags & Flag.END_STREAM) !== 0 && !s.destroyed) s.pushEnd();
  }

  #onHeaders(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    if (id === 0) throw protocolError("HEADERS on stream 0");
    const block = this.#block.headers(flags, id, buf, at, len);
    if (block !== undefined) this.#onHeaderBlock(id, flags, block);
  }

  #onContinuation(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    const block = this.#block.continuation(flags, id, buf, at, len);
    if (block !== undefined) this.#onHeaderBlock(id, this.#block.flags, block);
  }

  #onHeaderBlock(id: number, flags: number, block: Uint8Array): void {
    let fields;
    try {
      fields = this.#decoder.decode(block);
    } catch (e) {
      throw new H2ConnectionError(
        ErrorCode.COMPRESSION_ERROR,
        (e as Error).message,
      );
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const open = this.#streams.get(id);
    if (open !== undefined) {
      // Trailers: they must end the stream.
      if (open.remoteEnded) this.#streamError(open, ErrorCode.STREAM_CLOSED);
      else if (!endStream) this.#streamError(open, ErrorCode.PROTOCOL_ERROR);
      else open.pushEnd();
      return;
    }
    if ((id & 1) === 0) throw protocolError(`HEADERS on even stream ${id}`);
    if (id <= this.#lastStreamId) {
      // A stream we finished or reset (late trailers): a stream error only.
      this.#writer.frame32(FrameType.RST_STREAM, id, ErrorCode.STREAM_CLOSED);
      return;
    }
    this.#lastStreamId = id;
    if (
      this.#goawaySent || this.#streams.size >= this.#opts.maxConcurrentStreams
    ) {
      this.#writer.frame32(FrameType.RST_STREAM, id, ErrorCode.REFUSED_STREAM);
      return;
    }
    const headers = toIncomingHeaders(fields);
    if (typeof headers === "string") {
      this.#writer.frame32(FrameType.RST_STREAM, id, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    const s = new H2ServerStream(
      this,
      id,
      this.#opts.streamWindow,
      this.#peerInitialWindow,
    );
    this.#streams.set(id, s);
    if (endStream) s.remoteEnded = true;
    try {
      this.#owner.onStream(s, headers);
    } catch (e) {
      this.#owner.onError?.(e);
      s.close(ErrorCode.INTERNAL_ERROR);
    }
  }

  #onRstStream(id: number, buf: Uint8Array, at: number, len: number): void {
    if (len !== 4) throw frameSizeError("RST_STREAM must be 4 bytes");
    if (id === 0) throw protocolError("RST_STREAM on stream 0");
    if (id > this.#lastStreamId) {
      throw protocolError(`RST_STREAM on idle stream ${id}`);
    }
    const s = this.#streams.get(id);
    if (s === undefined) return;
    // Opening and resetting streams costs the peer nothing and us a call
    // each, outside MAX_CONCURRENT_STREAMS ("rapid reset",
    // CVE-2023-44487): a burst is fine, a sustained rate is not.
    const now = Date.now();
    this.#resetTokens = Math.min(
      this.#resetBurst,
      this.#resetTokens + (now - this.#resetRefilled) * RESETS_PER_MS,
    );
    this.#resetRefilled = now;
    if (--this.#resetTokens < 0) {
      throw new H2ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        "too many stream resets",
      );
    }
    s.abort(readUint32(buf, at));
  }

  #onSettings(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    let windowDelta = 0;
    const changed = readSettings(flags, id, buf, at, len, (key, value) => {
      if (key === Setting.INITIAL_WINDOW_SIZE) {
        windowDelta += value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
      } else if (key === Setting.MAX_FRAME_SIZE) {
        this.#peerMaxFrame = value;
      }
      // Others do not apply: our HPACK encoder never indexes, we never push.
    });
    if (!changed) return;
    if (!this.#settled) clearTimeout(this.#handshakeTimer);
    if (windowDelta !== 0) {
      for (const s of this.#streams.values()) {
        s.sendWindow += windowDelta;
        if (s.sendWindow > MAX_WINDOW) {
          throw flowControlError("a stream window went above 2^31-1");
        }
      }
    }
    this.#settled = true;
    this.#control();
    this.#writer.header(0, FrameType.SETTINGS, Flag.ACK, 0);
    if (windowDelta > 0) this.#pumpBlocked();
  }

  #onPing(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    if (len !== 8) throw frameSizeError("PING must be 8 bytes");
    if (id !== 0) throw protocolError("PING on a stream");
    if (flags & Flag.ACK) return;
    this.#control();
    const w = this.#writer;
    w.header(8, FrameType.PING, Flag.ACK, 0);
    w.bytes(buf.subarray(at, at + 8));
  }

  #onGoaway(id: number, len: number): void {
    if (len < 8) throw frameSizeError("GOAWAY shorter than 8 bytes");
    if (id !== 0) throw protocolError("GOAWAY on a stream");
    this.#peerGoaway = true;
    if (this.#streams.size === 0) this.#finish();
  }

  #onWindowUpdate(id: number, buf: Uint8Array, at: number, len: number): void {
    const increment = windowIncrement(buf, at, len);
    if (id === 0) {
      if (increment === 0) throw protocolError("WINDOW_UPDATE of 0");
      this.#sendWindow += increment;
      if (this.#sendWindow > MAX_WINDOW) {
        throw flowControlError("connection window above 2^31-1");
      }
      this.#pumpBlocked();
      return;
    }
    const s = this.#streams.get(id);
    if (s === undefined) {
      if (id > this.#lastStreamId) {
        throw protocolError(`WINDOW_UPDATE on idle stream ${id}`);
      }
      return;
    }
    if (increment === 0) {
      this.#streamError(s, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW) {
      this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    if (s.pending.length > 0) this.pump(s);
  }

  // --- writing and lifecycle -------------------------------------------------

  /** Gives `bytes` back to the connection-level receive window. */
  #giveBack(bytes: number): void {
    this.#recvUnacked += bytes;
    if (this.#recvUnacked >= this.#opts.connectionWindow / 2) {
      this.#writer.frame32(FrameType.WINDOW_UPDATE, 0, this.#recvUnacked);
      this.#recvWindow += this.#recvUnacked;
      this.#recvUnacked = 0;
    }
  }

  /** A peer that floods frames needing an answer and never reads them. */
  #control(): void {
    if (this.#writer.buffered > this.#opts.outputLimit * 2) {
      throw new H2ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        "too many control frames queued for a peer that does not read",
      );
    }
  }

  #onWritten(): void {
    if (this.#writer.buffered <= 2 * this.#opts.outputLimit) this.#wakeReader();
    if (
      this.#blocked.size > 0 && this.#writer.buffered < this.#opts.outputLimit
    ) {
      this.#pumpBlocked();
    }
  }

  #wakeReader(): void {
    const wake = this.#readerWaiting;
    this.#readerWaiting = undefined;
    wake?.();
  }

  #pumpBlocked(): void {
    for (const s of [...this.#blocked]) {
      this.pump(s);
      if (
        this.#sendWindow <= 0 || this.#writer.buffered >= this.#opts.outputLimit
      ) return;
    }
  }

  #rstById(id: number, code: number): void {
    const s = this.#streams.get(id);
    if (s !== undefined) this.#streamError(s, code);
    else this.#writer.frame32(FrameType.RST_STREAM, id, code);
  }

  #streamError(s: H2ServerStream, code: number): void {
    this.#writer.frame32(FrameType.RST_STREAM, s.id, code);
    s.abort(code);
  }

  #abortAll(code: number): void {
    const streams = [...this.#streams.values()];
    for (const s of streams) s.abort(code);
    this.#streams.clear();
    this.#blocked.clear();
  }

  #connectionError(e: unknown): void {
    if (this.#dead) return;
    const code = e instanceof H2ConnectionError
      ? e.code
      : ErrorCode.INTERNAL_ERROR;
    if (!(e instanceof H2ConnectionError)) this.#owner.onError?.(e);
    this.#writer.bytes(goawayFrame(this.#lastStreamId, code));
    this.#abortAll(code);
    this.#dead = true;
    this.#finish();
  }

  /**
   * Flushes what is queued (for at most a linger), half-closes, and closes
   * at the peer's EOF or after another linger. A peer that does not read
   * gets no half-close: its socket closes when the first linger ends.
   */
  #finish(): void {
    if (this.#finishing) return;
    this.#finishing = true;
    this.#dead = true;
    this.#wakeReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    void Promise.race([
      this.#writer.idle().then(() => true),
      new Promise<boolean>((resolve) =>
        timer = setTimeout(() => resolve(false), LINGER_MS)
      ),
    ]).then((flushed) => {
      clearTimeout(timer);
      this.#writer.kill();
      if (!flushed || this.#reported) {
        this.#closeSocket();
        return;
      }
      // The read loop closes the socket at the peer's EOF, or this does.
      this.#linger = setTimeout(() => this.#closeSocket(), LINGER_MS);
      this.#conn.closeWrite().catch(() => {
        // the socket is gone already
      });
    });
  }

  /** The socket ended (EOF, error, or a failed write). */
  #lost(): void {
    this.#abortAll(ErrorCode.CANCEL);
    this.#dead = true;
    this.#wakeReader();
    this.#writer.kill();
    this.#closeSocket();
  }

  #closeSocket(): void {
    clearTimeout(this.#linger);
    clearTimeout(this.#handshakeTimer);
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    if (this.#reported) return;
    this.#reported = true;
    this.#owner.closed(this);
  }

  #encodeHeaders(headers: OutgoingHeaders): Uint8Array {
    const frozen = Object.isFrozen(headers);
    if (frozen) {
      const cached = encodedFrozen.get(headers);
      if (cached !== undefined) return cached;
    }
    const fields: [string, string][] = [];
    const status = headers[":status"];
    if (status !== undefined) fields.push([":status", String(status)]);
    for (const name in headers) {
      if (name === ":status") continue;
      const value = headers[name];
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      if (typeof value === "object") {
        for (const v of value) fields.push([lower, v]);
      } else {
        fields.push([lower, String(value)]);
      }
    }
    const block = this.#encoder.encode(fields);
    if (frozen) encodedFrozen.set(headers, block);
    return block;
  }
}

/** Encoded blocks of frozen header objects (constant responses, trailers). */
const encodedFrozen = new WeakMap<object, Uint8Array>();
