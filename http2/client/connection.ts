/**
 * The client role of the HTTP/2 engine (http2/connection.ts): one connection
 * the edge dials to the core, over a Deno TCP or TLS socket.
 *
 * On top of the engine it opens streams (odd ids, once the server's SETTINGS
 * are known, within its MAX_CONCURRENT_STREAMS), queues request DATA that
 * the windows hold back, hands a stream back to the pool when this
 * connection cannot send it (SETTINGS limit, GOAWAY), answers the server's
 * GOAWAY, and keeps the connection alive with PINGs (keepalive.ts). gRPC
 * semantics live in the stream handlers, not here.
 *
 * @module
 */
import type { HeaderField } from "../../protocol/http2/hpack.ts";
import {
  DEFAULT_MAX_FRAME_SIZE,
  ErrorCode,
  errorName,
  Flag,
  FrameType,
  H2ConnectionError,
  MAX_STREAM_ID,
  readUint32,
  Setting,
} from "../../protocol/http2/frames.ts";
import { protocolError } from "../../protocol/http2/frame_parse.ts";
import type { DataFrame } from "../connection.ts";
import { H2ClientOutput } from "./output.ts";
import { Keepalive } from "../keepalive.ts";
import { closeQuietly, type ConnectionTarget, dial } from "./dial.ts";
import type { H2Stream, StreamOwner } from "./stream.ts";

export type { ConnectionTarget } from "./dial.ts";

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
  closed(connection: H2ClientConnection): void;
}

const MAX_HEADER_BLOCK = 256 * 1024;
const EMPTY = new Uint8Array(0);

/** A client connection; create it through the pool. */
export class H2ClientConnection extends H2ClientOutput implements StreamOwner {
  protected readonly writeHighWater: number;
  readonly #owner: ConnectionOwner;
  #waiting: H2Stream[] = [];
  readonly #pings = new Map<number, (ok: boolean) => void>();
  #pingSeq = 0;
  #nextId: number;
  #peerMaxStreams = Infinity;
  // The server's SETTINGS_MAX_HEADER_LIST_SIZE (unlimited until it says).
  #peerMaxHeaderList = Infinity;
  #goaway = false;
  readonly #keepalive: Keepalive | undefined;
  // Aborts a dial still in progress when the connection ends.
  readonly #dialAbort = new AbortController();
  readonly #done: Promise<void>;

  constructor(
    owner: ConnectionOwner,
    target: ConnectionTarget,
    options: ConnectionOptions,
  ) {
    super({
      streamWindow: options.streamWindow,
      connectionWindow: options.connectionWindow,
      maxHeaderBlock: MAX_HEADER_BLOCK,
      readPauseBytes: Infinity,
      outputLimit: Infinity,
      // Started before dialling: Deno.connect has no timeout of its own, and
      // a TLS handshake with a silent peer waits forever.
      handshakeTimeoutMs: options.settingsTimeoutMs,
    }, "upstream");
    this.#owner = owner;
    this.writeHighWater = options.writeHighWater;
    this.#nextId = options.firstStreamId ?? 1;
    if (options.keepaliveIntervalMs > 0) {
      this.#keepalive = new Keepalive(this, options);
    }
    this.sendPreface([
      [Setting.HEADER_TABLE_SIZE, 4096],
      [Setting.ENABLE_PUSH, 0],
      [Setting.INITIAL_WINDOW_SIZE, options.streamWindow],
      [Setting.MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE],
    ], true);
    this.armHandshake();
    this.#done = this.#run(target);
  }

  /** True while new streams may be placed here. */
  get hasCapacity(): boolean {
    return !this.dead && !this.#goaway && this.#nextId <= MAX_STREAM_ID &&
      this.streams.size + this.#waiting.length < this.#peerMaxStreams;
  }

  /**
   * True while the peer serves this connection: past the handshake (the
   * peer has answered on it), not dead, no GOAWAY. It may be full (at the
   * peer's stream limit, out of stream ids) and still answer a PING for
   * the origin.
   */
  get established(): boolean {
    return this.settled && !this.dead && !this.#goaway;
  }

  /** Keepalive pings only a connection with open streams. */
  wantsPing(): boolean {
    return this.streams.size > 0;
  }

  /** Takes a stream; it is sent once the peer's SETTINGS are known. */
  start(stream: H2Stream): void {
    stream.owner = this;
    if (!this.settled) this.#waiting.push(stream);
    else this.#open(stream);
  }

  /** Resolves true when a PING is answered within `timeoutMs`. */
  ping(timeoutMs: number): Promise<boolean> {
    if (this.dead) return Promise.resolve(false);
    return new Promise((resolve) => {
      const seq = this.#pingSeq = (this.#pingSeq + 1) >>> 0;
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#pings.delete(seq);
        resolve(ok);
      };
      this.#pings.set(seq, done);
      this.sendPing(0, seq);
    });
  }

  /**
   * Ends the connection: every stream fails with `message`, the socket
   * closes. A graceful end is a plain TCP close, no GOAWAY: a client
   * GOAWAY(NO_ERROR) aborts Deno's node:http2 servers (docs/goaway.md).
   * Resolves when reads and writes have stopped.
   */
  async close(message = "edge is shutting down"): Promise<void> {
    this.endConnection(ErrorCode.NO_ERROR, message, false);
    await this.#done;
  }

  async #run(target: ConnectionTarget): Promise<void> {
    let conn: Deno.Conn;
    try {
      conn = await dial(target, this.#dialAbort.signal);
    } catch (e) {
      this.endConnection(ErrorCode.CANCEL, (e as Error).message, true);
      return;
    }
    if (this.dead) return closeQuietly(conn);
    await this.readLoop(conn, false);
  }

  // --- StreamOwner -----------------------------------------------------------

  /** See {@linkcode H2Stream.reset}. */
  reset(s: H2Stream, code: number): void {
    if (s.closed) return;
    s.closed = true;
    if (s.id === 0) {
      const i = this.#waiting.indexOf(s);
      if (i >= 0) this.#waiting.splice(i, 1);
      return;
    }
    if (!this.dead) this.writer.frame32(FrameType.RST_STREAM, s.id, code);
    this.#forget(s);
  }

  /** See {@linkcode H2Stream.resume}. */
  resume(s: H2Stream): void {
    if (!s.closed) this.creditStream(s, 0);
  }

  // --- the engine's hooks ----------------------------------------------------

  protected isIdle(id: number): boolean {
    return (id & 1) === 0 || id >= this.#nextId;
  }

  protected onHeaderBlock(
    id: number,
    flags: number,
    fields: HeaderField[],
    tooLarge: number,
  ) {
    if (this.isIdle(id)) throw protocolError(`HEADERS on idle stream ${id}`);
    const s = this.streams.get(id);
    if (s === undefined) return;
    if (tooLarge > 0) {
      // Decoded (the table is in step) but cut: this call fails, not the
      // connection every other call shares (RFC 9113 §10.5.1).
      this.streamError(
        s,
        ErrorCode.INTERNAL_ERROR,
        `${this.peer} sent a header list of ${tooLarge} octets, above the limit of ${this.maxHeaderListSize}`,
      );
      return;
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (endStream) this.#remoteEnd(s);
    s.handler.onHeaders(fields, endStream);
  }

  protected onStreamData(s: H2Stream, flags: number, d: DataFrame): void {
    const len = d.len;
    // The connection window reopens at once: the stream windows bound what
    // each call may hold, and a paused call must not stall the others.
    this.giveBack(len);
    s.recvWindow -= len;
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (endStream) this.#remoteEnd(s);
    else if (s.paused) s.recvUnacked += len;
    else this.creditStream(s, len);
    s.handler.onData(
      d.to > d.from ? d.buf.slice(d.from, d.to) : EMPTY,
      endStream,
    );
  }

  protected onStreamReset(s: H2Stream, code: number): void {
    s.closed = true;
    s.remoteEnded = true;
    this.#forget(s);
    s.handler.onReset(code);
  }

  protected abortStream(s: H2Stream, code: number, message: string): void {
    s.closed = true;
    this.#forget(s);
    s.handler.onReset(code, message);
  }

  protected override onSetting(key: number, value: number): void {
    if (key === Setting.ENABLE_PUSH && value !== 0) {
      throw protocolError("a server enabled push");
    }
    if (key === Setting.MAX_CONCURRENT_STREAMS) this.#peerMaxStreams = value;
    if (key === Setting.MAX_HEADER_LIST_SIZE) this.#peerMaxHeaderList = value;
    // HEADER_TABLE_SIZE: our encoder never uses the table.
  }

  protected override onSettled(): void {
    this.#keepalive?.start();
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const s of waiting) {
      if (s.closed) continue;
      if (this.hasCapacity) this.#open(s);
      else this.#spill(s);
    }
  }

  protected override onPingAck(buf: Uint8Array, at: number): void {
    // A keepalive ACK needs no handling: every read counts as liveness.
    if (readUint32(buf, at) === 0) {
      this.#pings.get(readUint32(buf, at + 4))?.(true);
    }
  }

  protected onGoaway(lastStreamId: number, code: number): void {
    // Streams above `last` were never processed: they fail now, and calls
    // not yet sent move to another connection. Draining from here on: a
    // failed stream's handler may place its call again, never here.
    this.#goaway = true;
    for (const s of this.streams.values()) {
      if (s.id <= lastStreamId) continue;
      s.closed = true;
      this.#detach(s);
      s.handler.onFail(
        `upstream sent GOAWAY (${errorName(code)}) before processing the call`,
        true,
        true,
      );
    }
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const s of waiting) if (!s.closed) this.#spill(s);
    if (this.streams.size === 0) {
      this.endConnection(
        ErrorCode.NO_ERROR,
        "upstream connection drained",
        false,
      );
    }
  }

  protected onHandshakeTimeout(): void {
    if (this.conn !== undefined) {
      this.connectionError(
        new H2ConnectionError(
          ErrorCode.SETTINGS_TIMEOUT,
          "no SETTINGS in time",
        ),
      );
    } else {
      this.endConnection(ErrorCode.CANCEL, "upstream connect timed out", true);
    }
  }

  protected endStreams(_code: number, message: string): void {
    this.#keepalive?.stop();
    if (!this.conn) this.#dialAbort.abort();
    const streams = [...this.streams.values(), ...this.#waiting];
    this.#waiting = [];
    this.drainWaiters.clear();
    for (const done of [...this.#pings.values()]) done(false);
    this.#owner.closed(this);
    for (const s of streams) {
      if (s.closed) continue;
      s.closed = true;
      // A stream still waiting for the peer's SETTINGS was never written.
      s.handler.onFail(message, s.id === 0);
    }
  }

  protected onClosed(): void {}

  // --- streams ---------------------------------------------------------------

  #open(s: H2Stream): void {
    if (s.headerListSize > this.#peerMaxHeaderList) {
      // A server may answer an over-limit header list with a connection
      // error (the core did before it answered on the stream), which would
      // end every other call here. Never sent, so it fails alone.
      s.closed = true;
      s.owner = undefined;
      this.drainWaiters.delete(s);
      s.handler.onReset(
        ErrorCode.ENHANCE_YOUR_CALM,
        `request headers of ${s.headerListSize} bytes exceed the upstream's limit of ${this.#peerMaxHeaderList} (SETTINGS_MAX_HEADER_LIST_SIZE)`,
      );
      return;
    }
    const id = this.#nextId;
    this.#nextId += 2;
    s.id = id;
    s.sendWindow = this.peerInitialWindow;
    s.recvWindow = this.opts.streamWindow;
    this.streams.set(s);
    this.writer.headerBlock(id, s.headerBlock!, this.peerMaxFrame, false);
    s.headerBlock = undefined;
    this.pump(s);
    if (s.wantsDrain) {
      // It may have started waiting on the connection it was moved from.
      this.drainWaiters.add(s);
      this.onWritable();
    }
  }

  /** Moves a stream this connection will not send to the pool. */
  #spill(s: H2Stream): void {
    s.owner = undefined;
    this.drainWaiters.delete(s);
    if (this.#peerMaxStreams === 0) {
      s.closed = true;
      s.handler.onFail(
        "upstream allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)",
        true,
      );
      return;
    }
    s.moves++;
    this.#owner.place(s);
  }

  /** The peer ended its side; a stream still sending is reset (NO_ERROR). */
  #remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    if (!s.localClosed) {
      this.writer.frame32(FrameType.RST_STREAM, s.id, ErrorCode.NO_ERROR);
    }
    s.closed = true;
    this.#forget(s);
  }

  #forget(s: H2Stream): void {
    this.#detach(s);
    // Draining after GOAWAY, or out of stream ids: the last stream ends it.
    if (
      this.streams.size === 0 && !this.dead &&
      (this.#goaway || this.#nextId > MAX_STREAM_ID)
    ) {
      this.endConnection(
        ErrorCode.NO_ERROR,
        "upstream connection drained",
        false,
      );
    }
  }

  #detach(s: H2Stream): void {
    this.streams.delete(s.id);
    if (s.outBytes > 0) {
      s.out = [];
      s.outBytes = 0;
    }
    this.blocked.delete(s);
    this.drainWaiters.delete(s);
  }
}
