/**
 * One HTTP/2 client connection (RFC 9113) over a Deno TCP or TLS socket.
 *
 * It owns the preface and SETTINGS exchange, the stream table, the read loop
 * (one reusable buffer, many frames parsed per read, no object per frame),
 * per-turn batched writes, flow control in both directions, PING, GOAWAY,
 * RST_STREAM and keepalive. gRPC semantics live in the stream handlers, not
 * here.
 *
 * A connection error (a frame the RFC calls malformed) ends the connection
 * with GOAWAY carrying the error code; every stream then fails.
 *
 * @module
 */
import {
  type HeaderField,
  HpackDecoder,
} from "../../../protocol/http2/hpack.ts";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  errorName,
  Flag,
  FRAME_HEADER_BYTES,
  FrameType,
  goawayFrame,
  H2ConnectionError,
  MAX_STREAM_ID,
  MAX_WINDOW,
  readUint32,
  Setting,
  settingsFrame,
  windowUpdateFrame,
  writeFrameHeader,
  writeUint32,
} from "../../../protocol/http2/frames.ts";
import {
  eachFrame,
  frameSizeError,
  type FrameVisitor,
  HeaderBlockReader,
  paddedEnd,
  protocolError,
  readSettings,
  windowIncrement,
} from "../../../protocol/http2/frame_parse.ts";
import type { H2Stream, StreamOwner } from "./stream.ts";
import {
  FrameWriter,
  type FrameWriterEvents,
} from "../../../http2/frame_writer.ts";
import { ReadBuffer } from "../../../http2/read_buffer.ts";
import {
  ENVELOPE_HEADER_BYTES as ENVELOPE_BYTES,
  writeEnvelopeHeader,
} from "../../../protocol/envelope.ts";

/** Where and how to dial. */
export interface ConnectionTarget {
  hostname: string;
  port: number;
  tls: boolean;
  /** PEM roots for TLS (added to the system roots). */
  caCerts?: string[];
}

/** Tuning of a connection; the defaults suit gRPC. */
export interface ConnectionOptions {
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: bytes a stream may have unread. */
  streamWindow: number;
  /** The connection-level receive window. */
  connectionWindow: number;
  /** Above this many unwritten bytes, writes ask the caller to wait. */
  writeHighWater: number;
  /**
   * How long dialling, the TLS handshake and the server's SETTINGS may take
   * together; a blackholed address or a silent port fails the calls then.
   */
  settingsTimeoutMs: number;
  /**
   * Silence from the peer, while streams are open, after which a keepalive
   * PING goes out (grpc's keepalive_time); 0 turns keepalive off. A host that
   * died without closing its sockets would otherwise hang streaming calls
   * until the kernel gives up on the connection.
   */
  keepaliveIntervalMs: number;
  /**
   * How long a keepalive PING may go unanswered (no frame at all arrives)
   * before the connection counts as dead (grpc's keepalive_timeout).
   */
  keepaliveTimeoutMs: number;
  /** The first stream id (odd); tests start near 2^31 to exhaust ids. */
  firstStreamId?: number;
}

/** The pool a connection reports to. */
export interface ConnectionOwner {
  /** Place a stream this connection will not send (SETTINGS limit, GOAWAY). */
  place(stream: H2Stream): void;
  /** The connection is finished and takes no streams. */
  closed(connection: H2Connection): void;
}

const READ_BYTES = 64 * 1024;
const MIN_READ_ROOM = 16 * 1024;
const MAX_HEADER_BLOCK = 256 * 1024;
// PING and SETTINGS ACKs queued while no socket write completes: a peer that
// sends them but never reads would otherwise grow the write buffer forever.
const MAX_QUEUED_ACKS = 10_000;
const EMPTY = new Uint8Array(0);
// How long a closing connection waits for its writes and the peer's EOF.
const LINGER_MS = 1000;
// The first half of a keepalive PING's opaque data ("keep"); ping() uses 0,
// so its ACK is never taken for a health check's.
const KEEPALIVE_PING = 0x6b656570;

/** A client connection; create it through the pool. */
export class H2Connection implements StreamOwner, FrameWriterEvents {
  readonly #owner: ConnectionOwner;
  readonly #opts: ConnectionOptions;
  readonly #writer: FrameWriter;
  readonly #decoder = new HpackDecoder(4096);
  readonly #streams = new Map<number, H2Stream>();
  #waiting: H2Stream[] = [];
  readonly #blocked = new Set<H2Stream>();
  readonly #drainWaiters = new Set<H2Stream>();
  readonly #pings = new Map<number, (ok: boolean) => void>();
  #pingSeq = 0;
  #conn: Deno.Conn | undefined;
  #nextId = 1;
  #settled = false; // the peer's first SETTINGS arrived
  #peerMaxStreams = Infinity;
  #peerWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  #sendWindow = DEFAULT_WINDOW;
  #recvWindow: number;
  #recvUnacked = 0;
  #goaway = false;
  #dead = false;
  #settingsTimer: ReturnType<typeof setTimeout> | undefined;
  // Aborts a dial still in progress when the connection ends.
  readonly #dialAbort = new AbortController();
  #linger: ReturnType<typeof setTimeout> | undefined;
  // A header block spread over HEADERS + CONTINUATION frames.
  readonly #block = new HeaderBlockReader(MAX_HEADER_BLOCK);
  #acksQueued = 0;
  // Keepalive: a read since the last tick, and a PING still unanswered.
  #heard = false;
  #keepalivePending = false;
  #keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #keepaliveTick = () => this.#keepalive();
  readonly #done: Promise<void>;
  #closing: Promise<void> = Promise.resolve();

  constructor(
    owner: ConnectionOwner,
    target: ConnectionTarget,
    options: ConnectionOptions,
  ) {
    this.#owner = owner;
    this.#opts = options;
    this.#writer = new FrameWriter(this);
    this.#recvWindow = options.connectionWindow;
    this.#nextId = options.firstStreamId ?? 1;
    this.#writer.bytes(CLIENT_PREFACE);
    this.#writer.bytes(settingsFrame([
      [Setting.HEADER_TABLE_SIZE, 4096],
      [Setting.ENABLE_PUSH, 0],
      [Setting.INITIAL_WINDOW_SIZE, options.streamWindow],
      [Setting.MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE],
    ]));
    if (options.connectionWindow > DEFAULT_WINDOW) {
      this.#writer.bytes(
        windowUpdateFrame(0, options.connectionWindow - DEFAULT_WINDOW),
      );
    }
    // Started before dialling: Deno.connect has no timeout of its own, and a
    // TLS handshake with a silent peer waits forever.
    this.#settingsTimer = setTimeout(() => {
      this.#die(
        this.#conn
          ? "upstream sent no HTTP/2 SETTINGS"
          : "upstream connect timed out",
        ErrorCode.SETTINGS_TIMEOUT,
      );
    }, options.settingsTimeoutMs);
    this.#done = this.#run(target);
  }

  /** True while new streams may be placed here. */
  get hasCapacity(): boolean {
    return !this.#dead && !this.#goaway && this.#nextId <= MAX_STREAM_ID &&
      this.#streams.size + this.#waiting.length < this.#peerMaxStreams;
  }

  /** True once the connection is finished. */
  get dead(): boolean {
    return this.#dead;
  }

  /** Takes a stream; it is sent once the peer's SETTINGS are known. */
  start(stream: H2Stream): void {
    stream.owner = this;
    if (!this.#settled) this.#waiting.push(stream);
    else this.#open(stream);
  }

  /** Resolves true when a PING is answered within `timeoutMs`. */
  ping(timeoutMs: number): Promise<boolean> {
    if (this.#dead) return Promise.resolve(false);
    return new Promise((resolve) => {
      const seq = this.#pingSeq = (this.#pingSeq + 1) >>> 0;
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#pings.delete(seq);
        resolve(ok);
      };
      this.#pings.set(seq, done);
      this.#sendPing(0, seq);
    });
  }

  /**
   * Ends the connection: every stream fails with `message`, the socket
   * closes (no GOAWAY; see #die). Resolves when reads and writes have stopped.
   */
  async close(message = "edge is shutting down"): Promise<void> {
    this.#die(message, ErrorCode.NO_ERROR);
    await this.#done;
    await this.#closing;
  }

  // --- StreamOwner ---------------------------------------------------------

  /** See {@linkcode H2Stream.write}. */
  writeMessage(s: H2Stream, message: Uint8Array): boolean {
    if (s.closed || s.localClosed || s.endPending || this.#dead) return true;
    const total = ENVELOPE_BYTES + message.byteLength;
    if (
      s.id !== 0 && s.outBytes === 0 && total <= s.sendWindow &&
      total <= this.#sendWindow && total <= this.#peerMaxFrame
    ) {
      // The common case: one DATA frame, copied once into the write buffer.
      const w = this.#writer;
      const at = w.reserve(FRAME_HEADER_BYTES + total);
      const b = w.buf;
      writeFrameHeader(b, at, total, FrameType.DATA, 0, s.id);
      writeEnvelopeHeader(b, at + FRAME_HEADER_BYTES, 0, message.byteLength);
      b.set(message, at + FRAME_HEADER_BYTES + ENVELOPE_BYTES);
      s.sendWindow -= total;
      this.#sendWindow -= total;
    } else {
      const envelope = new Uint8Array(ENVELOPE_BYTES);
      writeEnvelopeHeader(envelope, 0, 0, message.byteLength);
      s.out.push(envelope);
      if (message.byteLength > 0) s.out.push(message);
      s.outBytes += total;
      if (s.id !== 0) this.#sendPending(s);
    }
    if (
      s.outBytes === 0 && this.#writer.buffered <= this.#opts.writeHighWater
    ) {
      return true;
    }
    s.wantsDrain = true;
    this.#drainWaiters.add(s);
    return false;
  }

  /** See {@linkcode H2Stream.end}. */
  end(s: H2Stream): void {
    if (s.closed || s.localClosed || s.endPending || this.#dead) return;
    if (s.id === 0 || s.outBytes > 0) {
      s.endPending = true;
      return;
    }
    this.#writer.header(0, FrameType.DATA, Flag.END_STREAM, s.id);
    s.localClosed = true;
  }

  /** See {@linkcode H2Stream.reset}. */
  reset(s: H2Stream, code: number): void {
    if (s.closed) return;
    s.closed = true;
    if (s.id === 0) {
      const i = this.#waiting.indexOf(s);
      if (i >= 0) this.#waiting.splice(i, 1);
      return;
    }
    if (!this.#dead) {
      this.#writer.frame32(FrameType.RST_STREAM, s.id, code);
    }
    this.#forget(s);
  }

  /** See {@linkcode H2Stream.resume}. */
  resume(s: H2Stream): void {
    if (!s.closed && s.recvUnacked >= this.#opts.streamWindow / 2) {
      this.#giveBack(s);
    }
  }

  // --- FrameWriterEvents ---------------------------------------------------

  /** The socket write failed. */
  onWriteError(error: Error): void {
    this.#die(`upstream connection lost: ${error.message}`);
  }

  /** A socket write completed. */
  onWritten(): void {
    this.#acksQueued = 0;
    if (this.#drainWaiters.size > 0) this.#notifyDrain();
  }

  // --- lifecycle -----------------------------------------------------------

  async #run(target: ConnectionTarget): Promise<void> {
    let conn: Deno.Conn;
    try {
      conn = await dial(target, this.#dialAbort.signal);
    } catch (e) {
      this.#die((e as Error).message);
      return;
    }
    if (this.#dead) {
      closeQuietly(conn);
      return;
    }
    this.#conn = conn;
    this.#writer.attach(conn);
    await this.#readLoop(conn);
  }

  async #readLoop(conn: Deno.Conn): Promise<void> {
    const rb = new ReadBuffer(READ_BYTES, MIN_READ_ROOM);
    let lost: string | undefined;
    while (true) {
      let n: number | null;
      try {
        n = await conn.read(rb.space());
      } catch (e) {
        lost = `upstream connection lost: ${(e as Error).message}`;
        break;
      }
      if (n === null) break;
      // Liveness for keepalive: one store per read, not per frame.
      this.#heard = true;
      // After the end, reading goes on only to see the peer's EOF, so that
      // closing with unread bytes does not reset our GOAWAY away.
      if (this.#dead) {
        rb.clear();
        continue;
      }
      rb.filled(n);
      try {
        rb.consumed(
          eachFrame(rb.buf, rb.start, rb.end, this.#live, this.#onFrame),
        );
      } catch (e) {
        rb.clear();
        if (e instanceof H2ConnectionError) {
          this.#die(
            `upstream protocol error (${errorName(e.code)}): ${e.message}`,
            e.code,
          );
        } else {
          this.#die(
            `upstream connection failed: ${(e as Error).message}`,
            ErrorCode.INTERNAL_ERROR,
          );
        }
      }
    }
    this.#die(lost ?? "upstream closed the connection");
    await this.#closing;
    clearTimeout(this.#linger);
    closeQuietly(conn);
  }

  /**
   * Ends the connection once. With an error code in `goaway`, a GOAWAY frame
   * is the last thing written. Streams not yet answered fail with `message`.
   */
  #die(message: string, goaway?: number, abandon = false): void {
    if (this.#dead) return;
    this.#dead = true;
    clearTimeout(this.#settingsTimer);
    clearTimeout(this.#keepaliveTimer);
    if (!this.#conn) this.#dialAbort.abort();
    // A graceful end is a plain TCP close: a client GOAWAY(NO_ERROR) aborts
    // Deno's node:http2 servers, our core included (docs/goaway.md).
    if (goaway !== undefined && goaway !== ErrorCode.NO_ERROR && this.#conn) {
      this.#writer.bytes(goawayFrame(0, goaway));
    }
    const streams = [...this.#streams.values(), ...this.#waiting];
    this.#streams.clear();
    this.#waiting = [];
    this.#blocked.clear();
    this.#drainWaiters.clear();
    for (const done of [...this.#pings.values()]) done(false);
    this.#closing = this.#closeSocket(abandon);
    this.#owner.closed(this);
    for (const s of streams) {
      if (s.closed) continue;
      s.closed = true;
      s.handler.onFail(message);
    }
  }

  /**
   * Flushes (GOAWAY included), half-closes, and bounds the wait for EOF.
   * An `abandon`ed socket (the peer stopped answering) closes at once: there
   * is no one to flush to.
   */
  async #closeSocket(abandon: boolean): Promise<void> {
    const conn = this.#conn;
    if (!conn) return;
    if (abandon) {
      this.#writer.kill();
      closeQuietly(conn);
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#writer.idle(),
      new Promise((resolve) => timer = setTimeout(resolve, LINGER_MS)),
    ]);
    clearTimeout(timer);
    this.#writer.kill();
    try {
      await conn.closeWrite();
    } catch {
      // the socket is gone already
    }
    // The read loop closes the socket at the peer's EOF, or this does.
    this.#linger = setTimeout(() => closeQuietly(conn), LINGER_MS);
  }

  // --- reading -------------------------------------------------------------

  readonly #live = () => !this.#dead;

  readonly #onFrame: FrameVisitor = (type, flags, id, buf, at, len) => {
    if (this.#block.stream !== 0 && type !== FrameType.CONTINUATION) {
      throw protocolError("expected CONTINUATION");
    }
    if (!this.#settled && type !== FrameType.SETTINGS) {
      throw protocolError("the server preface must start with SETTINGS");
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
        break;
      case FrameType.RST_STREAM:
        this.#onRstStream(id, buf, at, len);
        break;
      case FrameType.SETTINGS:
        this.#onSettings(flags, id, buf, at, len);
        break;
      case FrameType.PUSH_PROMISE:
        throw protocolError("PUSH_PROMISE with push disabled");
      case FrameType.PING:
        this.#onPing(flags, id, buf, at, len);
        break;
      case FrameType.GOAWAY:
        this.#onGoaway(id, buf, at, len);
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

  /** Throws for a stream id the peer may not use on a client connection. */
  #checkStreamId(id: number, what: string): void {
    if (id === 0) throw protocolError(`${what} on stream 0`);
    if ((id & 1) === 0 || id >= this.#nextId) {
      throw protocolError(`${what} on idle stream ${id}`);
    }
  }

  #onData(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    this.#checkStreamId(id, "DATA");
    // The whole frame, padding included, counts against both windows.
    if (len > this.#recvWindow) {
      throw new H2ConnectionError(
        ErrorCode.FLOW_CONTROL_ERROR,
        "DATA beyond the connection window",
      );
    }
    this.#recvWindow -= len;
    this.#recvUnacked += len;
    if (this.#recvUnacked >= this.#opts.connectionWindow / 2) {
      this.#writer.frame32(FrameType.WINDOW_UPDATE, 0, this.#recvUnacked);
      this.#recvWindow += this.#recvUnacked;
      this.#recvUnacked = 0;
    }
    let from = at;
    let to = at + len;
    if (flags & Flag.PADDED) {
      to = paddedEnd(flags, buf, at, len, "DATA");
      from++;
    }
    const s = this.#streams.get(id);
    // A stream we reset or finished: its late frames are dropped.
    if (s === undefined) return;
    if (len > s.recvWindow) {
      this.#streamError(
        s,
        ErrorCode.FLOW_CONTROL_ERROR,
        "upstream sent DATA beyond the stream window",
      );
      return;
    }
    s.recvWindow -= len;
    s.recvUnacked += len;
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (endStream) {
      this.#remoteEnd(s);
    } else if (
      !s.paused && s.recvUnacked >= this.#opts.streamWindow / 2
    ) {
      this.#giveBack(s);
    }
    s.handler.onData(to > from ? buf.slice(from, to) : EMPTY, endStream);
  }

  #onHeaders(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    this.#checkStreamId(id, "HEADERS");
    const block = this.#block.headers(flags, id, buf, at, len);
    if (block !== undefined) {
      this.#headerBlock(id, (flags & Flag.END_STREAM) !== 0, block);
    }
  }

  #onContinuation(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    const block = this.#block.continuation(flags, id, buf, at, len);
    if (block !== undefined) {
      this.#headerBlock(
        id,
        (this.#block.flags & Flag.END_STREAM) !== 0,
        block,
      );
    }
  }

  #headerBlock(id: number, endStream: boolean, block: Uint8Array): void {
    let fields: HeaderField[];
    try {
      // Decoded even for a stream we dropped: the HPACK table must follow.
      fields = this.#decoder.decode(block);
    } catch (e) {
      throw new H2ConnectionError(
        ErrorCode.COMPRESSION_ERROR,
        `bad header block: ${(e as Error).message}`,
      );
    }
    const s = this.#streams.get(id);
    if (s === undefined) return;
    if (endStream) this.#remoteEnd(s);
    s.handler.onHeaders(fields, endStream);
  }

  #onRstStream(id: number, buf: Uint8Array, at: number, len: number): void {
    if (len !== 4) throw frameSizeError("RST_STREAM of the wrong size");
    this.#checkStreamId(id, "RST_STREAM");
    const s = this.#streams.get(id);
    if (s === undefined) return;
    s.closed = true;
    s.remoteClosed = true;
    this.#forget(s);
    s.handler.onReset(readUint32(buf, at));
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
      switch (key) {
        case Setting.ENABLE_PUSH:
          if (value !== 0) throw protocolError("a server enabled push");
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.#peerMaxStreams = value;
          break;
        case Setting.INITIAL_WINDOW_SIZE:
          windowDelta += value - this.#peerWindow;
          this.#peerWindow = value;
          break;
        case Setting.MAX_FRAME_SIZE:
          this.#peerMaxFrame = value;
          break;
        default:
          break; // HEADER_TABLE_SIZE: our encoder never uses the table
      }
    });
    if (!changed) {
      if (!this.#settled) {
        throw protocolError("the server preface must start with SETTINGS");
      }
      return;
    }
    if (windowDelta !== 0) {
      for (const s of this.#streams.values()) {
        s.sendWindow += windowDelta;
        if (s.sendWindow > MAX_WINDOW) {
          throw new H2ConnectionError(
            ErrorCode.FLOW_CONTROL_ERROR,
            "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window",
          );
        }
      }
    }
    this.#countAck();
    this.#writer.header(0, FrameType.SETTINGS, Flag.ACK, 0);
    if (!this.#settled) {
      this.#settled = true;
      clearTimeout(this.#settingsTimer);
      if (this.#opts.keepaliveIntervalMs > 0) {
        this.#keepaliveTimer = setTimeout(
          this.#keepaliveTick,
          this.#opts.keepaliveIntervalMs,
        );
      }
      const waiting = this.#waiting;
      this.#waiting = [];
      for (const s of waiting) {
        if (s.closed) continue;
        if (this.hasCapacity) this.#open(s);
        else this.#spill(s);
      }
    }
    if (windowDelta > 0) this.#flushBlocked();
  }

  #onPing(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    if (id !== 0) throw protocolError("PING on a stream");
    if (len !== 8) throw frameSizeError("PING of the wrong size");
    if (flags & Flag.ACK) {
      // A keepalive ACK needs no handling: every read counts as liveness.
      if (readUint32(buf, at) === 0) {
        this.#pings.get(readUint32(buf, at + 4))?.(true);
      }
      return;
    }
    this.#countAck();
    this.#writer.header(8, FrameType.PING, Flag.ACK, 0);
    this.#writer.bytes(buf.subarray(at, at + 8));
  }

  #sendPing(high: number, low: number): void {
    const w = this.#writer;
    const at = w.reserve(FRAME_HEADER_BYTES + 8);
    writeFrameHeader(w.buf, at, 8, FrameType.PING, 0, 0);
    writeUint32(w.buf, at + FRAME_HEADER_BYTES, high);
    writeUint32(w.buf, at + FRAME_HEADER_BYTES + 4, low);
  }

  /**
   * The keepalive timer: one per connection, re-armed once per tick rather
   * than per frame. A tick with no read since the last one sends a PING if
   * streams are open (grpc's keepalive_permit_without_calls=false); the next
   * tick, `keepaliveTimeoutMs` later, ends the connection if still nothing
   * arrived. So a PING follows 1-2 intervals of silence, never more than one
   * is outstanding, and they are at least an interval apart, well inside
   * servers' PING-flood limits; a busy connection sends none.
   */
  #keepalive(): void {
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = this.#opts;
    if (this.#heard) {
      this.#heard = false;
      this.#keepalivePending = false;
    } else if (this.#keepalivePending) {
      this.#die(
        `upstream did not answer a keepalive ping within ${keepaliveTimeoutMs} ms`,
        undefined,
        true,
      );
      return;
    } else if (this.#streams.size > 0) {
      this.#keepalivePending = true;
      this.#sendPing(KEEPALIVE_PING, 0);
      this.#keepaliveTimer = setTimeout(
        this.#keepaliveTick,
        keepaliveTimeoutMs,
      );
      return;
    }
    this.#keepaliveTimer = setTimeout(this.#keepaliveTick, keepaliveIntervalMs);
  }

  #countAck(): void {
    if (++this.#acksQueued > MAX_QUEUED_ACKS) {
      throw new H2ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `over ${MAX_QUEUED_ACKS} PING/SETTINGS to acknowledge while not reading`,
      );
    }
  }

  #onGoaway(id: number, buf: Uint8Array, at: number, len: number): void {
    if (id !== 0) throw protocolError("GOAWAY on a stream");
    if (len < 8) throw frameSizeError("GOAWAY too short");
    const last = readUint32(buf, at) & MAX_STREAM_ID;
    const code = readUint32(buf, at + 4);
    // Streams above `last` were never processed: they fail now, and calls
    // not yet sent move to another connection.
    for (const s of [...this.#streams.values()]) {
      if (s.id <= last) continue;
      s.closed = true;
      this.#detach(s);
      s.handler.onFail(
        `upstream sent GOAWAY (${errorName(code)}) before processing the call`,
      );
    }
    this.#goaway = true;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const s of waiting) if (!s.closed) this.#spill(s);
    if (this.#streams.size === 0) {
      this.#die("upstream connection drained", ErrorCode.NO_ERROR);
    }
  }

  #onWindowUpdate(id: number, buf: Uint8Array, at: number, len: number): void {
    const increment = windowIncrement(buf, at, len);
    if (id === 0) {
      if (increment === 0) throw protocolError("WINDOW_UPDATE of 0");
      this.#sendWindow += increment;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new H2ConnectionError(
          ErrorCode.FLOW_CONTROL_ERROR,
          "connection window over 2^31-1",
        );
      }
      this.#flushBlocked();
      return;
    }
    this.#checkStreamId(id, "WINDOW_UPDATE");
    const s = this.#streams.get(id);
    if (s === undefined) return;
    if (increment === 0) {
      this.#streamError(
        s,
        ErrorCode.PROTOCOL_ERROR,
        "upstream sent a WINDOW_UPDATE of 0",
      );
      return;
    }
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW) {
      this.#streamError(
        s,
        ErrorCode.FLOW_CONTROL_ERROR,
        "upstream overflowed the stream window",
      );
      return;
    }
    if (s.outBytes > 0 || s.endPending) {
      this.#sendPending(s);
      this.#notifyDrain();
    }
  }

  // --- streams -------------------------------------------------------------

  #open(s: H2Stream): void {
    const id = this.#nextId;
    this.#nextId += 2;
    s.id = id;
    s.sendWindow = this.#peerWindow;
    s.recvWindow = this.#opts.streamWindow;
    this.#streams.set(id, s);
    this.#writer.headerBlock(id, s.headerBlock!, this.#peerMaxFrame, false);
    s.headerBlock = undefined;
    if (s.outBytes > 0 || s.endPending) this.#sendPending(s);
    if (s.wantsDrain) {
      // It may have started waiting on the connection it was moved from.
      this.#drainWaiters.add(s);
      this.#notifyDrain();
    }
  }

  /** Moves a stream this connection will not send to the pool. */
  #spill(s: H2Stream): void {
    s.owner = undefined;
    this.#drainWaiters.delete(s);
    if (this.#peerMaxStreams === 0) {
      s.closed = true;
      s.handler.onFail(
        "upstream allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)",
      );
      return;
    }
    s.moves++;
    this.#owner.place(s);
  }

  /** Sends queued bytes as far as the windows allow. */
  #sendPending(s: H2Stream): void {
    const w = this.#writer;
    while (s.outBytes > 0) {
      const n = Math.min(
        s.outBytes,
        s.sendWindow,
        this.#sendWindow,
        this.#peerMaxFrame,
      );
      if (n <= 0) break;
      const last = n === s.outBytes && s.endPending;
      w.header(n, FrameType.DATA, last ? Flag.END_STREAM : 0, s.id);
      const at = w.reserve(n);
      const b = w.buf;
      let filled = 0;
      while (filled < n) {
        const part = s.out[s.outHead];
        const take = Math.min(part.byteLength - s.outOffset, n - filled);
        b.set(part.subarray(s.outOffset, s.outOffset + take), at + filled);
        filled += take;
        s.outOffset += take;
        if (s.outOffset === part.byteLength) {
          s.out[s.outHead++] = EMPTY;
          s.outOffset = 0;
        }
      }
      s.outBytes -= n;
      s.sendWindow -= n;
      this.#sendWindow -= n;
      if (last) {
        s.endPending = false;
        s.localClosed = true;
      }
    }
    if (s.outBytes > 0) {
      this.#blocked.add(s);
      return;
    }
    s.out = [];
    s.outHead = 0;
    this.#blocked.delete(s);
    if (s.endPending) {
      w.header(0, FrameType.DATA, Flag.END_STREAM, s.id);
      s.endPending = false;
      s.localClosed = true;
    }
  }

  #flushBlocked(): void {
    for (const s of this.#blocked) {
      if (this.#sendWindow <= 0) break;
      this.#sendPending(s);
    }
    this.#notifyDrain();
  }

  #notifyDrain(): void {
    if (this.#writer.buffered > this.#opts.writeHighWater) return;
    for (const s of this.#drainWaiters) {
      if (s.outBytes > 0 || s.id === 0) continue;
      this.#drainWaiters.delete(s);
      s.wantsDrain = false;
      s.handler.onDrain();
    }
  }

  /** Returns a stream's consumed bytes to the peer. */
  #giveBack(s: H2Stream): void {
    this.#writer.frame32(FrameType.WINDOW_UPDATE, s.id, s.recvUnacked);
    s.recvWindow += s.recvUnacked;
    s.recvUnacked = 0;
  }

  /** The peer ended its side; a stream still sending is reset (NO_ERROR). */
  #remoteEnd(s: H2Stream): void {
    s.remoteClosed = true;
    if (!s.localClosed) {
      this.#writer.frame32(FrameType.RST_STREAM, s.id, ErrorCode.NO_ERROR);
    }
    s.closed = true;
    this.#forget(s);
  }

  #streamError(s: H2Stream, code: number, message: string): void {
    s.closed = true;
    this.#writer.frame32(FrameType.RST_STREAM, s.id, code);
    this.#forget(s);
    s.handler.onReset(code, message);
  }

  #forget(s: H2Stream): void {
    this.#detach(s);
    // Draining after GOAWAY, or out of stream ids: the last stream ends it.
    if (
      this.#streams.size === 0 && !this.#dead &&
      (this.#goaway || this.#nextId > MAX_STREAM_ID)
    ) {
      this.#die("upstream connection drained", ErrorCode.NO_ERROR);
    }
  }

  #detach(s: H2Stream): void {
    this.#streams.delete(s.id);
    if (s.outBytes > 0) {
      s.out = [];
      s.outBytes = 0;
      this.#blocked.delete(s);
    }
    this.#drainWaiters.delete(s);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed by the peer or a failed write
  }
}

/** Connects (and shakes hands); `signal` aborts both steps. */
async function dial(
  target: ConnectionTarget,
  signal: AbortSignal,
): Promise<Deno.Conn> {
  const tcp = await Deno.connect({
    hostname: target.hostname,
    port: target.port,
    signal,
  });
  tcp.setNoDelay(true);
  if (!target.tls) return tcp;
  let conn: Deno.TlsConn;
  try {
    signal.throwIfAborted();
    conn = await Deno.startTls(tcp, {
      hostname: target.hostname,
      caCerts: target.caCerts,
      alpnProtocols: ["h2"],
    });
  } catch (e) {
    closeQuietly(tcp);
    throw e;
  }
  // Closing the socket is the only way to stop a handshake in progress.
  const abort = () => closeQuietly(conn);
  signal.addEventListener("abort", abort);
  try {
    const { alpnProtocol } = await conn.handshake();
    if (alpnProtocol !== "h2") {
      throw new Error(
        `upstream TLS did not negotiate HTTP/2 (ALPN ${
          alpnProtocol ?? "none"
        })`,
      );
    }
  } catch (e) {
    closeQuietly(conn);
    throw e;
  } finally {
    signal.removeEventListener("abort", abort);
  }
  return conn;
}
