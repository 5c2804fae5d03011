/**
 * One client-initiated HTTP/2 stream as the caller sees it: the callbacks
 * it receives and the handle it writes through.
 *
 * The handle survives a move between connections: a stream that has not been
 * sent yet (its connection was still waiting for the peer's SETTINGS, or the
 * peer limited concurrent streams, or sent GOAWAY) is placed on another
 * connection by the pool without the caller noticing.
 *
 * @module
 */
import type { HeaderField } from "../../protocol/http2/hpack.ts";
import type { FlowStream } from "../connection.ts";

/** What a stream reports to its caller. Each ends the stream except onDrain. */
export interface StreamHandler {
  /**
   * A complete header block. `endStream` marks trailers (or a headers-only
   * answer); the stream is closed by then.
   */
  onHeaders(fields: HeaderField[], endStream: boolean): void;
  /** Response bytes (a copy the handler owns); `endStream` closes the stream. */
  onData(data: Uint8Array, endStream: boolean): void;
  /**
   * The stream was reset with an RST_STREAM error code: by the peer, or by
   * this side (with `message`) because the peer broke the protocol on it.
   * Also (ENHANCE_YOUR_CALM, with `message`) for a request never sent
   * because its header list is over the peer's SETTINGS_MAX_HEADER_LIST_SIZE:
   * sent, the peer would end the whole connection over it.
   */
  onReset(code: number, message?: string): void;
  /**
   * The stream ended without an answer: connection lost, connection error,
   * or the peer's GOAWAY excluded it. `unsent` says the peer never got or
   * never processed it (never written: its connection failed before the
   * peer's SETTINGS, or none would take it; or above a GOAWAY's last
   * stream id), so it may be sent again (RFC 9113 §8.7). `refused` says
   * the peer itself excluded it (its GOAWAY): it is alive and may take the
   * stream on another connection.
   */
  onFail(message: string, unsent?: boolean, refused?: boolean): void;
  /** A write that returned false may continue. */
  onDrain(): void;
}

/** The operations a stream's connection performs for it. */
export interface StreamOwner {
  writeMessage(stream: H2Stream, message: Uint8Array): boolean;
  end(stream: H2Stream): void;
  reset(stream: H2Stream, code: number): void;
  resume(stream: H2Stream): void;
}

/**
 * A stream handle. Fields are the connection's bookkeeping; callers use the
 * methods.
 */
export class H2Stream implements FlowStream {
  /** 0 until its HEADERS are sent. */
  id = 0;
  owner: StreamOwner | undefined;
  /** The request header block, kept until sent. */
  headerBlock: Uint8Array | undefined;
  /**
   * The block's header list size (RFC 9113 §6.5.2), held against the peer's
   * SETTINGS_MAX_HEADER_LIST_SIZE before it is sent; 0 when not known.
   */
  readonly headerListSize: number;
  /** Bytes the peer lets us send on this stream. */
  sendWindow = 0;
  /** Bytes we have told the peer it may still send. */
  recvWindow = 0;
  /** Received bytes not yet given back with WINDOW_UPDATE. */
  recvUnacked = 0;
  paused = false;
  /** Queued outgoing bytes (envelope headers and messages) waiting for window. */
  out: Uint8Array[] = [];
  outHead = 0;
  outOffset = 0;
  outBytes = 0;
  /** end() was called while bytes were still queued. */
  endPending = false;
  localClosed = false;
  remoteEnded = false;
  /** No more frames for this stream, in either direction. */
  closed = false;
  wantsDrain = false;
  /** Times the pool moved it to another connection before it was sent. */
  moves = 0;

  constructor(
    readonly handler: StreamHandler,
    headerBlock: Uint8Array,
    headerListSize = 0,
  ) {
    this.headerBlock = headerBlock;
    this.headerListSize = headerListSize;
  }

  /**
   * Sends one gRPC message (the 5-byte envelope is added here). Returns false
   * when flow control or the socket is behind: wait for `onDrain()`.
   */
  write(message: Uint8Array): boolean {
    return this.owner?.writeMessage(this, message) ?? false;
  }

  /** Half-closes: END_STREAM after any queued bytes. */
  end(): void {
    this.owner?.end(this);
  }

  /** Closes the stream at once with RST_STREAM `code` (if it was sent). */
  reset(code: number): void {
    if (this.closed) return;
    if (this.owner) this.owner.reset(this, code);
    else this.closed = true;
  }

  /** Stops giving flow-control window back to the peer: it will stall. */
  pause(): void {
    this.paused = true;
  }

  /** Gives back the window held while paused. */
  resume(): void {
    this.paused = false;
    this.owner?.resume(this);
  }
}
