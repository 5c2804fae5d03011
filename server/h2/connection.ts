/**
 * One HTTP/2 server connection (RFC 9113, h2c with prior knowledge) over a
 * Deno TCP socket: the core's transport under grpc-js.
 *
 * It owns the preface and SETTINGS exchange, the stream table, the read loop
 * (one reusable buffer, many frames per read, no object per frame), per-turn
 * batched writes (sockets/frame_writer.ts), flow control both ways, PING,
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
import { FrameWriter } from "../../sockets/frame_writer.ts";
import { ReadBuffer } from "../../sockets/read_buffer.ts";
import {
  H2ServerStream,
  type IncomingHeaders,
  type OutgoingHeaders,
  type StreamHost,
} from "./stream.ts";
import { contentLength, toIncomingHeaders, trailerError } from "./headers.ts";
import { EnvelopeMeter } from "../../protocol/envelope.ts";
import { RequestBudget } from "./request_budget.ts";

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
  /**
   * After this long without a byte from the peer we send a PING; 0 sends
   * none. A dead peer (or one behind a lost NAT entry) is found this way.
   */
  keepaliveIntervalMs: number;
  /** How long a keepalive PING may wait for any answer before we close. */
  keepaliveTimeoutMs: number;
  /**
   * A connection with no open stream for this long is closed (without a
   * GOAWAY; see #armIdle); 0 keeps idle connections open.
   */
  idleTimeoutMs: number;
  /**
   * Bounds on request bytes of unfinished gRPC messages (per connection and
   * across the listener), shared by every connection of a listener.
   */
  requestBudget: RequestBudget | undefined;
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
    keepaliveIntervalMs: 60_000,
    keepaliveTimeoutMs: 20_000,
    idleTimeoutMs: 300_000,
    requestBudget: undefined,
  });

/** What a connection reports to its listener. */
export interface ConnectionOwner {
  /** A new request stream; throwing resets it with INTERNAL_ERROR. */
  onStream(stream: H2ServerStream, headers: IncomingHeaders): void;
  /** The socket is closed and every stream is gone. */
  closed(connection: H2ServerConnection): void;
  /** An exception thrown by `onStream`. */
  onError?(error: unknown): void;
  /**
   * A stream went over the request budget; answer it (it is reset with
   * ENHANCE_YOUR_CALM after this if still open).
   */
  onOverBudget?(stream: H2ServerStream, reason: string): void;
}

const READ_BYTES = 64 * 1024;
/** Stream resets a peer may send in a burst, and refilled per ms (100/s). */
const RESET_BURST = 1000;
const RESETS_PER_MS = 0.1;
const MIN_READ_ROOM = FRAME_HEADER_BYTES + DEFAULT_MAX_FRAME_SIZE;
/** How long a closing connection waits for its last frames and the EOF. */
const LINGER_MS = 1000;
/** Streams over the request budget after which the connection is ended. */
const BUDGET_STRIKES = 3;
/**
 * How a stream closed, for frames that arrive after (RFC 9113 §5.1): after
 * the peer's END_STREAM any DATA or HEADERS is a connection error, after the
 * peer's RST_STREAM a stream error, and after ours they are ignored (the
 * peer may have sent them before it saw our reset).
 */
const ENDED_BY_PEER = 1;
const RESET_BY_PEER = 2;
const RESET_BY_US = 3;
/** Closed streams remembered per connection (the most recent ones). */
const CLOSED_MEMORY = 128;

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
  /** Recently closed stream ids and how they closed (see ENDED_BY_PEER). */
  readonly #closed = new Map<number, number>();
  /** The highest closed id forgotten by `#closed`. */
  #forgottenBelow = 0;
  /** HEADERS (the frame that began the pending block) depending on itself. */
  #selfDependent = false;
  /** Request bytes of unfinished messages held by this connection's streams. */
  #unfinished = 0;
  #budgetStrikes = 0;
  /** Bytes read so far: any read proves the peer alive (keepalive). */
  #reads = 0;
  #readsAtPing = -1;
  #keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #idleSince = Date.now();

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

  /** Request bytes of unfinished gRPC messages held for this connection. */
  get unfinishedRequestBytes(): number {
    return this.#unfinished;
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
    this.#armKeepalive();
    this.#armIdle(this.#opts.idleTimeoutMs);
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
    this.#opts.requestBudget?.addQueued(-bytes);
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
    this.#remember(
      stream.id,
      stream.remoteEnded ? ENDED_BY_PEER : RESET_BY_US,
    );
    if (stream.unfinishedBytes > 0) {
      this.#charge(-stream.unfinishedBytes);
      stream.unfinishedBytes = 0;
    }
    if (this.#streams.size === 0) {
      this.#idleSince = Date.now();
      if (this.#goawaySent || this.#peerGoaway) this.#finish();
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
      this.#reads++;
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
        this.#onPriority(id, buf, at, len);
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
      this.#giveBack(len);
      // Half-closed (remote): a stream error; closed: see #closedFrame.
      if (s !== undefined) this.#streamError(s, ErrorCode.STREAM_CLOSED);
      else this.#closedFrame(id, "DATA");
      return;
    }
    if (len > s.recvWindow) {
      this.#giveBack(len);
      this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (s.contentLeft >= 0) {
      // A body that does not match its content-length is malformed
      // (RFC 9113 §8.1.1).
      s.contentLeft -= to - from;
      if (s.contentLeft < 0 || (endStream && s.contentLeft > 0)) {
        this.#giveBack(len);
        this.#streamError(s, ErrorCode.PROTOCOL_ERROR);
        return;
      }
    }
    // Counted until consumed() (the handler read it, or it was dropped).
    this.#opts.requestBudget?.addQueued(len);
    const padding = len - (to - from);
    if (padding > 0) {
      s.recvWindow -= padding;
      this.consumed(s, padding);
    }
    if (to > from) {
      const data = buf.subarray(from, to);
      if (s.meter !== undefined && !this.#withinBudget(s, data)) {
        s.recvWindow -= to - from;
        this.consumed(s, to - from);
        return;
      }
      s.push(data);
    }
    if (endStream && !s.destroyed) s.pushEnd();
  }

  /**
   * Charges a stream's unfinished request bytes after `data`; false (and
   * the stream answered, and the connection perhaps ended) when that goes
   * over the connection's or the listener's budget.
   */
  #withinBudget(s: H2ServerStream, data: Uint8Array): boolean {
    const unfinished = s.meter!.push(data);
    const delta = unfinished - s.unfinishedBytes;
    s.unfinishedBytes = unfinished;
    this.#charge(delta);
    const budget = this.#opts.requestBudget!;
    const reason = delta > 0 && this.#unfinished > budget.perConnection
      ? `unfinished request messages above ${budget.perConnection} bytes on this connection`
      : budget.used > budget.total
      ? `request bytes held above ${budget.total} in all`
      : undefined;
    if (reason === undefined) return true;
    if (++this.#budgetStrikes >= BUDGET_STRIKES) {
      throw new H2ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `${BUDGET_STRIKES} streams went over the request budget`,
      );
    }
    try {
      this.#owner.onOverBudget?.(s, reason);
    } catch (e) {
      this.#owner.onError?.(e);
    }
    if (!s.destroyed) s.close(ErrorCode.ENHANCE_YOUR_CALM);
    return false;
  }

  /** Adds `delta` to this connection's and the listener's held bytes. */
  #charge(delta: number): void {
    this.#unfinished += delta;
    this.#opts.requestBudget?.add(delta);
  }

  #onHeaders(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    if (id === 0) throw protocolError("HEADERS on stream 0");
    // A stream cannot depend on itself (RFC 9113 §5.3.1): a stream error,
    // sent once the block is decoded (HPACK state must still move on).
    this.#selfDependent = (flags & Flag.PRIORITY) !== 0 &&
      (readUint32(buf, flags & Flag.PADDED ? at + 1 : at) & 0x7fffffff) ===
        id;
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
      // Trailers: they must end the stream and hold no pseudo-header; the
      // body must have had its content-length.
      if (open.remoteEnded) this.#streamError(open, ErrorCode.STREAM_CLOSED);
      else if (
        !endStream || this.#selfDependent || open.contentLeft > 0 ||
        trailerError(fields) !== undefined
      ) {
        this.#streamError(open, ErrorCode.PROTOCOL_ERROR);
      } else open.pushEnd();
      return;
    }
    if ((id & 1) === 0) throw protocolError(`HEADERS on even stream ${id}`);
    if (id <= this.#lastStreamId) {
      this.#closedFrame(id, "HEADERS");
      return;
    }
    this.#lastStreamId = id;
    if (
      this.#goawaySent || this.#streams.size >= this.#opts.maxConcurrentStreams
    ) {
      this.#refuse(id, ErrorCode.REFUSED_STREAM);
      return;
    }
    const headers = toIncomingHeaders(fields);
    if (typeof headers === "string" || this.#selfDependent) {
      this.#refuse(id, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    const length = headers["content-length"];
    const declared = length === undefined ? -1 : contentLength(length);
    if (endStream && declared > 0) {
      this.#refuse(id, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    const s = new H2ServerStream(
      this,
      id,
      this.#opts.streamWindow,
      this.#peerInitialWindow,
    );
    s.contentLeft = declared;
    if (this.#opts.requestBudget !== undefined) s.meter = new EnvelopeMeter();
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
    const endedByPeer = s.remoteEnded;
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
    if (!endedByPeer) this.#closed.set(id, RESET_BY_PEER);
  }

  #onPriority(id: number, buf: Uint8Array, at: number, len: number): void {
    if (id === 0) throw protocolError("PRIORITY on stream 0");
    if (len !== 5) {
      this.#rstById(id, ErrorCode.FRAME_SIZE_ERROR);
      return;
    }
    // Otherwise priority is advice we do not take (RFC 9113 §5.3.2), but a
    // stream cannot depend on itself (§5.3.1).
    if ((readUint32(buf, at) & 0x7fffffff) !== id) return;
    if (id > this.#lastStreamId) {
      // RST_STREAM may not be sent on an idle stream.
      throw protocolError(`PRIORITY of idle stream ${id} depends on itself`);
    }
    this.#rstById(id, ErrorCode.PROTOCOL_ERROR);
  }

  /**
   * DATA or HEADERS on a stream that is not open (id not above the last
   * one): RFC 9113 §5.1 by how the stream closed, §5.1.1 for an id the peer
   * skipped (a connection error). An id too old to be remembered gets a
   * stream error.
   */
  #closedFrame(id: number, what: string): void {
    if (id > this.#lastStreamId) {
      throw protocolError(`${what} on idle stream ${id}`);
    }
    const how = this.#closed.get(id);
    if (how === RESET_BY_US) return;
    if (how === ENDED_BY_PEER) {
      throw new H2ConnectionError(
        ErrorCode.STREAM_CLOSED,
        `${what} on stream ${id} after its END_STREAM`,
      );
    }
    if (how === undefined && id > this.#forgottenBelow) {
      throw protocolError(`${what} on stream ${id}, below one already opened`);
    }
    this.#writer.frame32(FrameType.RST_STREAM, id, ErrorCode.STREAM_CLOSED);
  }

  /** Resets a stream that was never opened, and remembers it. */
  #refuse(id: number, code: number): void {
    this.#writer.frame32(FrameType.RST_STREAM, id, code);
    this.#remember(id, RESET_BY_US);
  }

  #remember(id: number, how: number): void {
    const closed = this.#closed;
    closed.set(id, how);
    if (closed.size > CLOSED_MEMORY) {
      const oldest = closed.keys().next().value!;
      closed.delete(oldest);
      if (oldest > this.#forgottenBelow) this.#forgottenBelow = oldest;
    }
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
    if (flags & Flag.ACK) return; // any read already counts as an answer
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

  /**
   * Keepalive: a PING after `keepaliveIntervalMs` without a byte from the
   * peer; no byte for `keepaliveTimeoutMs` after it closes the connection.
   * Any read counts, so a busy connection is never pinged.
   */
  #armKeepalive(): void {
    const interval = this.#opts.keepaliveIntervalMs;
    if (interval <= 0 || this.#dead) return;
    let seen = this.#reads;
    const tick = () => {
      if (this.#dead) return;
      if (this.#reads !== seen) {
        seen = this.#reads;
        this.#keepaliveTimer = setTimeout(tick, interval);
        return;
      }
      if (this.#readsAtPing === this.#reads) {
        // Nothing came since the PING went out.
        this.destroy();
        return;
      }
      this.#readsAtPing = this.#reads;
      this.#writer.header(8, FrameType.PING, 0, 0);
      this.#writer.bytes(KEEPALIVE_PAYLOAD);
      this.#keepaliveTimer = setTimeout(tick, this.#opts.keepaliveTimeoutMs);
    };
    this.#keepaliveTimer = setTimeout(tick, interval);
  }

  /**
   * Idle timeout: a connection with no open stream for `idleTimeoutMs` is
   * closed. The timer is not touched per stream; it looks at when the last
   * stream ended and sleeps the rest.
   *
   * The close sends no GOAWAY: Deno's `node:http2` client (grpc-js on Deno:
   * our CLI clients, the tests) can abort its whole process on a GOAWAY to
   * an idle session (denoland/deno#36788; 4 of 8 runs here), while a plain
   * close only makes it reconnect on its next call. No stream is open, so
   * nothing is lost but a request racing the close.
   */
  #armIdle(ms: number): void {
    const timeout = this.#opts.idleTimeoutMs;
    if (timeout <= 0 || this.#dead) return;
    this.#idleTimer = setTimeout(() => {
      if (this.#dead) return;
      const idleFor = this.#streams.size === 0
        ? Date.now() - this.#idleSince
        : 0;
      if (idleFor >= timeout) this.destroy();
      else this.#armIdle(timeout - idleFor);
    }, ms);
  }

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
    clearTimeout(this.#keepaliveTimer);
    clearTimeout(this.#idleTimer);
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

/** The payload of our keepalive PINGs (any 8 bytes do). */
const KEEPALIVE_PAYLOAD = new Uint8Array(8);

/** Encoded blocks of frozen header objects (constant responses, trailers). */
const encodedFrozen = new WeakMap<object, Uint8Array>();
