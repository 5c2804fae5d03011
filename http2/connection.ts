/**
 * The HTTP/2 connection engine (RFC 9113) shared by both roles: the core's
 * server (http2/server/) and the edge's client (http2/client/) are thin
 * subclasses of {@linkcode H2Connection}.
 *
 * The engine owns what does not depend on who opened the connection: frame
 * dispatch (many frames per read, no object per frame) and the checks the
 * RFC puts on every frame, SETTINGS, PING, WINDOW_UPDATE, flow-control
 * windows both ways, header blocks (HEADERS + CONTINUATION, HPACK decoding)
 * and GOAWAY on a connection error. Its base classes are the windows
 * (flow.ts) and the socket (socket.ts: read loop, handshake timer, per-turn
 * batched writes, the end of a connection).
 *
 * A role supplies its streams and what happens on them: how a header block
 * opens or answers a stream, where DATA goes, how pending output is pumped,
 * what a peer's GOAWAY means. Those are the abstract methods below; the
 * engine calls them from the read loop, so they must not throw except with
 * an {@linkcode H2ConnectionError} (a connection error).
 *
 * @module
 */
import { type HeaderField, HpackDecoder } from "../protocol/http2/hpack.ts";
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
  readUint32,
  Setting,
  settingsFrame,
  windowUpdateFrame,
  writeFrameHeader,
  writeUint32,
} from "../protocol/http2/frames.ts";
import {
  eachFrame,
  frameSizeError,
  type FrameVisitor,
  HeaderBlockReader,
  paddedEnd,
  protocolError,
  readSettings,
  windowIncrement,
} from "../protocol/http2/frame_parse.ts";
import type { ReadBuffer } from "./read_buffer.ts";
import { type EngineOptions, type FlowStream, H2Flow } from "./flow.ts";

export type { EngineOptions, FlowStream } from "./flow.ts";

// A read always has room for a whole frame of the largest size we allow.
const MIN_READ_ROOM = FRAME_HEADER_BYTES + DEFAULT_MAX_FRAME_SIZE;
const EMPTY = new Uint8Array(0);

/** The DATA frame being read: `buf[from, to)` is its payload without padding,
 * `len` the whole frame (as the windows count it). */
export interface DataFrame {
  buf: Uint8Array;
  from: number;
  to: number;
  len: number;
}

// PING and SETTINGS ACKs queued while no socket write completes: a peer that
// sends them but never reads would otherwise grow the write buffer forever.
const MAX_UNWRITTEN_ACKS = 10_000;

/** One HTTP/2 connection over a Deno socket; see the module doc. */
export abstract class H2Connection<S extends FlowStream> extends H2Flow<S> {
  /** The peer's first SETTINGS arrived. */
  protected settled = false;
  /** The highest stream id the peer opened (GOAWAY's last-stream-id). */
  protected lastPeerStream = 0;
  /** The HEADERS frame that began the current block depends on itself. */
  protected selfDependent = false;
  readonly #decoder: HpackDecoder;
  readonly #block: HeaderBlockReader;
  #acks = 0;
  readonly #data: DataFrame = { buf: EMPTY, from: 0, to: 0, len: 0 };

  /** `peer` names the other side in failure messages ("upstream"). */
  constructor(
    options: Readonly<Omit<EngineOptions, "minReadRoom">>,
    peer: string,
  ) {
    super({ ...options, minReadRoom: MIN_READ_ROOM }, peer);
    this.#decoder = new HpackDecoder(4096, {
      maxHeaderListSize: options.maxHeaderListSize,
    });
    this.#block = new HeaderBlockReader(options.maxHeaderBlock);
  }

  // --- what a role supplies --------------------------------------------------

  /**
   * A complete, decoded header block (HEADERS or trailers). `tooLarge` is
   * 0, or the size of a header list above the decoder's
   * `maxHeaderListSize`: the block was decoded whole (the HPACK table moved
   * on) but `fields` holds only the first fields, within the limit. The
   * role answers that with a stream error (RFC 9113 §10.5.1), not a
   * connection error: the block was well-formed.
   */
  protected abstract onHeaderBlock(
    id: number,
    flags: number,
    fields: HeaderField[],
    tooLarge: number,
  ): void;
  /**
   * DATA within both windows for an open stream (`d` is reused: read it
   * during the call only).
   */
  protected abstract onStreamData(s: S, flags: number, d: DataFrame): void;
  /** The peer reset `s` with RST_STREAM `code`. */
  protected abstract onStreamReset(s: S, code: number): void;
  /** The peer's GOAWAY. */
  protected abstract onGoaway(lastStreamId: number, code: number): void;
  /**
   * DATA or HEADERS (`what`) on stream `id`, which is not open: the role
   * knows how it closed (RFC 9113 §5.1). By default frames of a closed
   * stream are dropped and an idle one is a connection error.
   */
  protected closedStreamFrame(id: number, what: string): void {
    if (this.isIdle(id)) throw protocolError(`${what} on idle stream ${id}`);
  }
  /** A setting the engine does not apply itself. */
  protected onSetting(_key: number, _value: number): void {}
  /** The peer's first SETTINGS arrived. */
  protected onSettled(): void {}
  /** A PING ACK; `buf[at, at + 8)` is its opaque data. */
  protected onPingAck(_buf: Uint8Array, _at: number): void {}
  /** An exception that is not an HTTP/2 error (a bug) ended the connection. */
  protected onBug(_error: unknown): void {}

  // --- start -----------------------------------------------------------------

  /** Queues our preface: the client magic (for a client), SETTINGS, window. */
  protected sendPreface(settings: [number, number][], client: boolean): void {
    if (client) this.writer.bytes(CLIENT_PREFACE);
    this.writer.bytes(settingsFrame(settings));
    const extra = this.opts.connectionWindow - DEFAULT_WINDOW;
    if (extra > 0) this.writer.bytes(windowUpdateFrame(0, extra));
  }

  /** Writes a PING with opaque data `high`, `low` (keepalive, health checks). */
  sendPing(high: number, low: number): void {
    const w = this.writer;
    const at = w.reserve(FRAME_HEADER_BYTES + 8);
    writeFrameHeader(w.buf, at, 8, FrameType.PING, 0, 0);
    writeUint32(w.buf, at + FRAME_HEADER_BYTES, high);
    writeUint32(w.buf, at + FRAME_HEADER_BYTES + 4, low);
  }

  /** The peer stopped answering: every stream ends, the socket closes now. */
  abandon(message: string): void {
    this.endConnection(ErrorCode.CANCEL, `${this.peer} ${message}`, true);
  }

  protected parse(rb: ReadBuffer): void {
    rb.consumed(eachFrame(rb.buf, rb.start, rb.end, this.#live, this.#onFrame));
  }

  // --- ending and output -----------------------------------------------------

  /** Ends the connection with GOAWAY(`code`) for `e` as the last frame. */
  protected connectionError(e: unknown): void {
    if (this.dead) return;
    let code: number = ErrorCode.INTERNAL_ERROR;
    let message: string;
    if (e instanceof H2ConnectionError) {
      code = e.code;
      message = `${this.peer} protocol error (${
        errorName(code)
      }): ${e.message}`;
    } else {
      message = `${this.peer} connection failed: ${(e as Error).message}`;
      this.onBug(e);
    }
    this.writer.bytes(goawayFrame(this.lastPeerStream, code));
    this.endConnection(code, message, false);
  }

  protected override afterWrite(): void {
    this.#acks = 0;
    super.afterWrite();
  }

  // --- reading ---------------------------------------------------------------

  readonly #live = () => !this.dead;

  readonly #onFrame: FrameVisitor = (type, flags, id, buf, at, len) => {
    if (this.#block.stream !== 0 && type !== FrameType.CONTINUATION) {
      throw protocolError("expected CONTINUATION");
    }
    if (!this.settled && type !== FrameType.SETTINGS) {
      throw protocolError("the preface must start with SETTINGS");
    }
    switch (type) {
      case FrameType.DATA:
        this.#onData(flags, id, buf, at, len);
        break;
      case FrameType.HEADERS: {
        if (id === 0) throw protocolError("HEADERS on stream 0");
        // A stream cannot depend on itself (RFC 9113 §5.3.1): a stream
        // error, once the block is decoded (HPACK state must move on).
        this.selfDependent = (flags & Flag.PRIORITY) !== 0 &&
          (readUint32(buf, flags & Flag.PADDED ? at + 1 : at) &
              MAX_STREAM_ID) === id;
        const block = this.#block.headers(flags, id, buf, at, len);
        if (block !== undefined) this.#headerBlock(id, flags, block);
        break;
      }
      case FrameType.CONTINUATION: {
        const block = this.#block.continuation(flags, id, buf, at, len);
        if (block !== undefined) {
          this.#headerBlock(id, this.#block.flags, block);
        }
        break;
      }
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
        throw protocolError("PUSH_PROMISE with push disabled");
      case FrameType.PING:
        this.#onPing(flags, id, buf, at, len);
        break;
      case FrameType.GOAWAY:
        if (id !== 0) throw protocolError("GOAWAY on a stream");
        if (len < 8) throw frameSizeError("GOAWAY shorter than 8 bytes");
        this.onGoaway(
          readUint32(buf, at) & MAX_STREAM_ID,
          readUint32(buf, at + 4),
        );
        break;
      case FrameType.WINDOW_UPDATE:
        this.windowUpdate(id, windowIncrement(buf, at, len));
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
    this.takeData(len);
    const to = paddedEnd(flags, buf, at, len, "DATA");
    const from = flags & Flag.PADDED ? at + 1 : at;
    const s = this.streams.get(id);
    if (s === undefined || s.remoteEnded) {
      this.giveBack(len);
      // Half-closed (remote): a stream error; closed: the role knows.
      if (s !== undefined) {
        this.streamError(s, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
      } else this.closedStreamFrame(id, "DATA");
      return;
    }
    if (len > s.recvWindow) {
      this.giveBack(len);
      this.streamError(
        s,
        ErrorCode.FLOW_CONTROL_ERROR,
        `${this.peer} sent DATA beyond the stream window`,
      );
      return;
    }
    const d = this.#data;
    d.buf = buf;
    d.from = from;
    d.to = to;
    d.len = len;
    this.onStreamData(s, flags, d);
  }

  #headerBlock(id: number, flags: number, block: Uint8Array): void {
    let fields: HeaderField[];
    try {
      // Decoded even for a stream that is gone: the HPACK table must follow.
      fields = this.#decoder.decode(block);
    } catch (e) {
      throw new H2ConnectionError(
        ErrorCode.COMPRESSION_ERROR,
        `bad header block: ${(e as Error).message}`,
      );
    }
    const size = this.#decoder.lastListSize;
    this.onHeaderBlock(
      id,
      flags,
      fields,
      size > this.#decoder.maxHeaderListSize ? size : 0,
    );
  }

  /** The largest header list a peer's block may decode to (whole). */
  protected get maxHeaderListSize(): number {
    return this.#decoder.maxHeaderListSize;
  }

  #onRstStream(id: number, buf: Uint8Array, at: number, len: number): void {
    if (len !== 4) throw frameSizeError("RST_STREAM must be 4 bytes");
    if (id === 0) throw protocolError("RST_STREAM on stream 0");
    const s = this.streams.get(id);
    if (s !== undefined) this.onStreamReset(s, readUint32(buf, at));
    else if (this.isIdle(id)) {
      throw protocolError(`RST_STREAM on idle stream ${id}`);
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
        windowDelta += value - this.peerInitialWindow;
        this.peerInitialWindow = value;
      } else if (key === Setting.MAX_FRAME_SIZE) {
        this.peerMaxFrame = value;
      } else {
        this.onSetting(key, value);
      }
    });
    if (!changed) return;
    if (windowDelta !== 0) this.shiftStreamWindows(windowDelta);
    this.#countAck();
    this.writer.header(0, FrameType.SETTINGS, Flag.ACK, 0);
    if (!this.settled) {
      this.settled = true;
      this.disarmHandshake();
      this.onSettled();
    }
    if (windowDelta > 0) this.pumpBlocked();
  }

  #onPing(
    flags: number,
    id: number,
    buf: Uint8Array,
    at: number,
    len: number,
  ): void {
    if (id !== 0) throw protocolError("PING on a stream");
    if (len !== 8) throw frameSizeError("PING must be 8 bytes");
    if (flags & Flag.ACK) return this.onPingAck(buf, at);
    this.#countAck();
    this.writer.header(8, FrameType.PING, Flag.ACK, 0);
    this.writer.bytes(buf.subarray(at, at + 8));
  }

  #countAck(): void {
    if (++this.#acks > MAX_UNWRITTEN_ACKS) {
      throw new H2ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `over ${MAX_UNWRITTEN_ACKS} PING/SETTINGS to acknowledge while not reading`,
      );
    }
  }

  #onPriority(id: number, buf: Uint8Array, at: number, len: number): void {
    if (id === 0) throw protocolError("PRIORITY on stream 0");
    if (len !== 5) return this.#rstById(id, ErrorCode.FRAME_SIZE_ERROR);
    // Otherwise priority is advice we do not take (RFC 9113 §5.3.2), but a
    // stream cannot depend on itself (§5.3.1).
    if ((readUint32(buf, at) & MAX_STREAM_ID) !== id) return;
    if (this.isIdle(id)) {
      // RST_STREAM may not be sent on an idle stream.
      throw protocolError(`PRIORITY of idle stream ${id} depends on itself`);
    }
    this.#rstById(id, ErrorCode.PROTOCOL_ERROR);
  }

  #rstById(id: number, code: number): void {
    const s = this.streams.get(id);
    if (s !== undefined) this.streamError(s, code, `bad frame on stream ${id}`);
    else this.writer.frame32(FrameType.RST_STREAM, id, code);
  }
}
