/**
 * The socket side of an HTTP/2 connection, for both roles: the read loop,
 * the handshake timer, the write side's events, and the end of a connection
 * (flush, half-close, linger for the peer's EOF). What the bytes mean is
 * http2/connection.ts, which extends this.
 *
 * @module
 */
import { CLIENT_PREFACE, ErrorCode } from "../protocol/http2/frames.ts";
import { protocolError } from "../protocol/http2/frame_parse.ts";
import { FrameWriter, type FrameWriterEvents } from "./frame_writer.ts";
import { ReadBuffer } from "./read_buffer.ts";

/** How a socket reads, waits and ends. */
export interface SocketOptions {
  /** Reading pauses while more than this waits for the socket. */
  readPauseBytes: number;
  /** How long the handshake (up to the peer's first SETTINGS) may take. */
  handshakeTimeoutMs: number;
  /** Room every read gets (a whole frame must fit). */
  minReadRoom: number;
}

const READ_BYTES = 64 * 1024;
/** How long a closing connection waits for its last frames and the EOF. */
const LINGER_MS = 1000;

/** One connection's socket; see the module doc. */
export abstract class H2Socket implements FrameWriterEvents {
  /** Frames leave through this, batched per event-loop turn. */
  protected readonly writer: FrameWriter = new FrameWriter(this);
  protected conn: Deno.Conn | undefined;
  /** No frames are read or written any more (the connection is ending). */
  protected dead = false;
  /** Set by every socket read: liveness for keepalive, one store per read. */
  heard = false;
  readonly #socket: Readonly<SocketOptions>;
  #handshake: ReturnType<typeof setTimeout> | undefined;
  #linger: ReturnType<typeof setTimeout> | undefined;
  #finishing = false;
  #closed = false;
  /** Set while the read loop waits for the socket to take our output. */
  #readerWaiting: (() => void) | undefined;

  /** `peer` names the other side in failure messages ("upstream"). */
  constructor(
    options: Readonly<SocketOptions>,
    protected readonly peer: string,
  ) {
    this.#socket = options;
  }

  /** Parses the frames in `rb` (throws for a connection error). */
  protected abstract parse(rb: ReadBuffer): void;
  /** Ends the connection for `e`, with GOAWAY where the protocol says so. */
  protected abstract connectionError(e: unknown): void;
  /** The connection ends: every stream ends with `code` / `message`. */
  protected abstract onEnd(code: number, message: string): void;
  /** A socket write completed (the ACK budget and blocked output reset). */
  protected abstract afterWrite(): void;
  /** The peer did not finish its handshake in time. */
  protected abstract onHandshakeTimeout(): void;
  /** The socket is closed (reported once). */
  protected abstract onClosed(): void;

  /** Starts the handshake timer: the peer's SETTINGS must come within it. */
  protected armHandshake(): void {
    this.#handshake = setTimeout(
      () => this.onHandshakeTimeout(),
      this.#socket.handshakeTimeoutMs,
    );
  }

  /** The handshake is done. */
  protected disarmHandshake(): void {
    clearTimeout(this.#handshake);
  }

  /**
   * Reads and parses frames until the socket ends; a server first expects
   * the client's preface (`expectPreface`).
   */
  protected async readLoop(
    conn: Deno.Conn,
    expectPreface: boolean,
  ): Promise<void> {
    this.conn = conn;
    this.writer.attach(conn);
    const rb = new ReadBuffer(READ_BYTES, this.#socket.minReadRoom);
    let lost = `${this.peer} closed the connection`;
    while (true) {
      // A peer that sends faster than it reads our answers waits for them:
      // every reply frame is bounded by TCP backpressure.
      if (!this.dead && this.writer.buffered > this.#socket.readPauseBytes) {
        await new Promise<void>((resolve) => this.#readerWaiting = resolve);
      }
      let n: number | null;
      try {
        n = await conn.read(rb.space());
      } catch (e) {
        lost = `${this.peer} connection lost: ${(e as Error).message}`;
        break;
      }
      if (n === null) break;
      this.heard = true;
      // After the end, reading goes on only to see the peer's EOF, so that
      // closing with unread bytes does not reset our GOAWAY away.
      if (this.dead) continue;
      rb.filled(n);
      try {
        if (expectPreface) {
          if (!consumePreface(rb)) continue;
          expectPreface = false;
        }
        this.parse(rb);
      } catch (e) {
        rb.clear();
        this.connectionError(e);
      }
    }
    this.endConnection(ErrorCode.CANCEL, lost, true);
    this.#closeNow();
  }

  /**
   * Ends the connection once: every stream ends, then the socket closes,
   * after its queued frames are flushed (at most a linger) unless
   * `abandon`ed (nobody left to flush to).
   */
  protected endConnection(
    code: number,
    message: string,
    abandon: boolean,
  ): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.#handshake);
    this.#wakeReader();
    this.onEnd(code, message);
    if (abandon || this.conn === undefined) this.#closeNow();
    else this.#finish();
  }

  /**
   * Flushes what is queued (for at most a linger), half-closes, and closes
   * at the peer's EOF or after another linger. A peer that does not read
   * gets no half-close: its socket closes when the first linger ends.
   */
  #finish(): void {
    if (this.#finishing) return;
    this.#finishing = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    void Promise.race([
      this.writer.idle().then(() => true),
      new Promise<boolean>((resolve) =>
        timer = setTimeout(() => resolve(false), LINGER_MS)
      ),
    ]).then((flushed) => {
      clearTimeout(timer);
      this.writer.kill();
      if (!flushed || this.#closed) return this.#closeNow();
      // The read loop closes the socket at the peer's EOF, or this does.
      this.#linger = setTimeout(() => this.#closeNow(), LINGER_MS);
      this.conn!.closeWrite().catch(() => {
        // the socket is gone already
      });
    });
  }

  #closeNow(): void {
    clearTimeout(this.#linger);
    clearTimeout(this.#handshake);
    this.writer.kill();
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn?.close();
    } catch {
      // already closed
    }
    this.onClosed();
  }

  // --- FrameWriterEvents -----------------------------------------------------

  /** A socket write failed: the connection is gone. */
  onWriteError(error: Error): void {
    this.endConnection(
      ErrorCode.CANCEL,
      `${this.peer} connection lost: ${error.message}`,
      true,
    );
  }

  /** A socket write completed. */
  onWritten(): void {
    if (this.writer.buffered <= this.#socket.readPauseBytes) {
      this.#wakeReader();
    }
    this.afterWrite();
  }

  #wakeReader(): void {
    const wake = this.#readerWaiting;
    this.#readerWaiting = undefined;
    wake?.();
  }
}

/** Consumes the client preface once it is all there; throws if it is not one. */
function consumePreface(rb: ReadBuffer): boolean {
  if (rb.end - rb.start < CLIENT_PREFACE.byteLength) return false;
  for (let i = 0; i < CLIENT_PREFACE.byteLength; i++) {
    if (rb.buf[rb.start + i] !== CLIENT_PREFACE[i]) {
      throw protocolError("not an HTTP/2 client preface");
    }
  }
  rb.consumed(rb.start + CLIENT_PREFACE.byteLength);
  return true;
}
