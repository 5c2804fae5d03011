/**
 * Flow control (RFC 9113 §5.2, §6.9) for both roles: the connection's and
 * every stream's windows in both directions, blocked output, stream errors.
 *
 * Receive windows reopen only as a role consumes data (`giveBack`,
 * `creditStream`), half a window at a time, so a stream holds at most its
 * window and a connection at most its connection window. Send windows are
 * the peer's; a stream whose output they hold back waits in `blocked` until
 * a WINDOW_UPDATE, a larger SETTINGS_INITIAL_WINDOW_SIZE, or the socket
 * taking bytes lets the role's `pump()` go on.
 *
 * @module
 */
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  FrameType,
  MAX_WINDOW,
} from "../protocol/http2/frames.ts";
import {
  flowControlError,
  protocolError,
} from "../protocol/http2/frame_parse.ts";
import { H2Socket, type SocketOptions } from "./socket.ts";
import { StreamTable } from "./stream_table.ts";

/** The flow-control state the engine keeps on every stream of a role. */
export interface FlowStream {
  readonly id: number;
  /** Bytes the peer lets us send on this stream. */
  sendWindow: number;
  /** Bytes the peer may still send us on this stream. */
  recvWindow: number;
  /** Bytes consumed and not yet given back with WINDOW_UPDATE. */
  recvUnacked: number;
  /** END_STREAM (or the end of the stream) received from the peer. */
  remoteEnded: boolean;
}

/** Tuning of the engine; each role fills it from its own options. */
export interface EngineOptions extends SocketOptions {
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: unread bytes a stream may hold. */
  streamWindow: number;
  /** Unread bytes the whole connection may hold. */
  connectionWindow: number;
  /**
   * Largest header block (HEADERS + CONTINUATION frames, encoded, frame
   * headers counted) accepted; a larger one is a connection error
   * (ENHANCE_YOUR_CALM). This hard cap bounds what a block can cost us.
   */
  maxHeaderBlock: number;
  /**
   * The decoded header list kept (default 64 KiB); a larger one within
   * `maxHeaderBlock` is decoded, cut, and refused as a stream error.
   */
  maxHeaderListSize?: number;
  /** Blocked streams are pumped only while less than this is queued. */
  outputLimit: number;
}

/** The windows of one connection and its streams; see the module doc. */
export abstract class H2Flow<S extends FlowStream> extends H2Socket {
  protected readonly streams: StreamTable<S> = new StreamTable();
  /** Streams with data that a window or the socket holds back. */
  protected readonly blocked = new Set<S>();
  protected readonly opts: Readonly<EngineOptions>;
  protected peerInitialWindow = DEFAULT_WINDOW;
  protected peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  /** The peer's connection-level window for our DATA. */
  protected sendWindow = DEFAULT_WINDOW;
  #recvWindow: number;
  #recvUnacked = 0;

  constructor(options: Readonly<EngineOptions>, peer: string) {
    super(options, peer);
    this.opts = options;
    this.#recvWindow = options.connectionWindow;
  }

  /** True for a stream id the peer may not use yet (or ever). */
  protected abstract isIdle(id: number): boolean;
  /** Sends as much of `s`'s pending data as the windows allow. */
  protected abstract pump(s: S): void;
  /** We reset `s` (RST_STREAM `code` is queued): it ends now. */
  protected abstract abortStream(s: S, code: number, message: string): void;
  /** The connection ends: every stream ends with `code` / `message`. */
  protected abstract endStreams(code: number, message: string): void;
  /** Output may continue (a window opened or the socket took bytes). */
  protected onWritable(): void {}

  protected onEnd(code: number, message: string): void {
    this.endStreams(code, message);
    this.streams.clear();
    this.blocked.clear();
  }

  protected afterWrite(): void {
    if (
      this.blocked.size > 0 && this.sendWindow > 0 &&
      this.writer.buffered < this.opts.outputLimit
    ) {
      this.pumpBlocked();
    } else {
      this.onWritable();
    }
  }

  /** Pumps blocked streams while the connection window and socket allow. */
  protected pumpBlocked(): void {
    for (const s of this.blocked) {
      this.pump(s);
      if (
        this.sendWindow <= 0 || this.writer.buffered >= this.opts.outputLimit
      ) break;
    }
    this.onWritable();
  }

  /** Counts a DATA frame of `len` bytes against the connection window. */
  protected takeData(len: number): void {
    // The whole frame, padding included, counts against both windows.
    if (len > this.#recvWindow) {
      throw flowControlError("DATA beyond the connection window");
    }
    this.#recvWindow -= len;
  }

  /** Gives `bytes` back to the connection-level receive window. */
  protected giveBack(bytes: number): void {
    this.#recvUnacked += bytes;
    if (this.#recvUnacked >= this.opts.connectionWindow / 2) {
      this.writer.frame32(FrameType.WINDOW_UPDATE, 0, this.#recvUnacked);
      this.#recvWindow += this.#recvUnacked;
      this.#recvUnacked = 0;
    }
  }

  /** Gives `bytes` consumed on `s` back to its window, half a window at a time. */
  protected creditStream(s: S, bytes: number): void {
    s.recvUnacked += bytes;
    if (s.recvUnacked >= this.opts.streamWindow / 2) {
      this.writer.frame32(FrameType.WINDOW_UPDATE, s.id, s.recvUnacked);
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
  }

  /** Resets `s` with `code` because the peer broke the protocol on it. */
  protected streamError(s: S, code: number, message: string): void {
    if (!this.dead) this.writer.frame32(FrameType.RST_STREAM, s.id, code);
    this.abortStream(s, code, message);
  }

  /** The peer's SETTINGS_INITIAL_WINDOW_SIZE moved every stream's window. */
  protected shiftStreamWindows(delta: number): void {
    for (const s of this.streams.values()) {
      s.sendWindow += delta;
      if (s.sendWindow > MAX_WINDOW) {
        throw flowControlError("a stream window went above 2^31-1");
      }
    }
  }

  /** A WINDOW_UPDATE of `increment` for stream `id` (0: the connection). */
  protected windowUpdate(id: number, increment: number): void {
    if (id === 0) {
      if (increment === 0) throw protocolError("WINDOW_UPDATE of 0");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) {
        throw flowControlError("connection window above 2^31-1");
      }
      this.pumpBlocked();
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) {
      if (this.isIdle(id)) {
        throw protocolError(`WINDOW_UPDATE on idle stream ${id}`);
      }
      return;
    }
    if (increment === 0) {
      this.streamError(
        s,
        ErrorCode.PROTOCOL_ERROR,
        `${this.peer} sent a WINDOW_UPDATE of 0`,
      );
      return;
    }
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW) {
      this.streamError(
        s,
        ErrorCode.FLOW_CONTROL_ERROR,
        `${this.peer} overflowed the stream window`,
      );
      return;
    }
    this.pump(s);
    this.onWritable();
  }
}
