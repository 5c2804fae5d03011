/**
 * The server role of the HTTP/2 engine (http2/connection.ts): one accepted
 * h2c connection (prior knowledge) over a Deno TCP socket, the core's
 * transport under grpc-js.
 *
 * On top of the engine it opens a stream per request HEADERS (refusing
 * those above `maxConcurrentStreams`, REFUSED_STREAM), validates requests
 * (headers.ts), content-length and trailers, answers a request whose header
 * list is above `maxHeaderListSize` on its own stream (the owner's answer,
 * else 431) while the connection goes on, answers frames on closed
 * streams by how they closed (closed_streams.ts), bounds request bytes of
 * unfinished messages (request_budget.ts) and rapid resets, pumps response
 * DATA, and ends idle connections. Streams are {@linkcode H2ServerStream}s,
 * handed to `onStream` with Node-style headers; gRPC lives above, in
 * grpc-js.
 *
 * A client's GOAWAY is taken as "no more streams from me": open streams run
 * to their end, then the connection closes. (Deno's `node:http2` server can
 * abort the process on one; this is the reason the GOAWAY guard and the
 * supervisor exist for the `node` transport.)
 *
 * @module
 */
import type { HeaderField } from "../../protocol/http2/hpack.ts";
import {
  ErrorCode,
  Flag,
  FrameType,
  goawayFrame,
  H2ConnectionError,
  Setting,
} from "../../protocol/http2/frames.ts";
import { protocolError } from "../../protocol/http2/frame_parse.ts";
import { EnvelopeMeter } from "../../protocol/envelope.ts";
import type { DataFrame } from "../connection.ts";
import type { ReadBuffer } from "../read_buffer.ts";
import { H2ServerOutput } from "./output.ts";
import { Keepalive } from "../keepalive.ts";
import { Closed, ClosedStreams } from "./closed_streams.ts";
import { contentLength, toIncomingHeaders, trailerError } from "./headers.ts";
import {
  type ConnectionOwner,
  DEFAULT_H2_SERVER_OPTIONS,
  type H2ServerOptions,
} from "./options.ts";
import { RequestMeter } from "./request_budget.ts";
import { H2ServerStream, type StreamHost } from "./stream.ts";

export {
  type ConnectionOwner,
  DEFAULT_H2_SERVER_OPTIONS,
  type H2ServerOptions,
};

/** The answer to a request whose header list is above our limit. */
const HEADER_FIELDS_TOO_LARGE = Object.freeze({ ":status": 431 });

/**
 * Premature stream resets a peer may send in a burst, and refilled per ms
 * (100/s). A reset is premature when its stream is younger than
 * PREMATURE_RESET_MS and unanswered (an answered stream is no longer ours
 * to reset).
 */
const RESET_BURST = 1000;
const RESETS_PER_MS = 0.1;
const PREMATURE_RESET_MS = 1000;

/** One accepted connection; see the module doc. */
export class H2ServerConnection extends H2ServerOutput implements StreamHost {
  readonly session: {
    socket: { remoteAddress: string; remotePort: number };
  };
  readonly #socket: Deno.Conn;
  readonly #server: Readonly<H2ServerOptions>;
  readonly #owner: ConnectionOwner;
  readonly #closed = new ClosedStreams();
  readonly #meter: RequestMeter | undefined;
  readonly #keepalive: Keepalive | undefined;
  /** Streams with DATA in the read being parsed. */
  readonly #reading: H2ServerStream[] = [];
  /** Flowing streams whose END_STREAM came in the read being parsed. */
  readonly #ending: H2ServerStream[] = [];
  #goawaySent = false;
  #peerGoaway = false;
  /** Resets the peer may still send (a token bucket; see onStreamReset). */
  readonly #resetBurst: number;
  #resetTokens: number;
  #resetRefilled = Date.now();
  /** We sent GOAWAY(ENHANCE_YOUR_CALM) for too many resets. */
  #calmed = false;
  /** Ends a calmed connection after `calmGraceMs`. */
  #calmTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the read being parsed came (streams' `openedAt`). */
  #readAt = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #idleSince = Date.now();

  constructor(
    conn: Deno.Conn,
    options: Readonly<H2ServerOptions>,
    owner: ConnectionOwner,
  ) {
    super({
      streamWindow: options.streamWindow,
      connectionWindow: options.connectionWindow,
      maxHeaderBlock: 2 * options.maxHeaderListSize,
      maxHeaderListSize: options.maxHeaderListSize,
      // Reading stops while twice the output limit waits for the socket.
      readPauseBytes: 2 * options.outputLimit,
      outputLimit: options.outputLimit,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
    }, "client");
    this.#socket = conn;
    this.#server = options;
    this.#owner = owner;
    const remote = conn.remoteAddr as Deno.NetAddr;
    this.session = {
      socket: { remoteAddress: remote.hostname, remotePort: remote.port },
    };
    // Cancelling every stream at once is normal; more than that is not.
    this.#resetBurst = Math.max(RESET_BURST, options.maxConcurrentStreams);
    this.#resetTokens = this.#resetBurst;
    if (options.requestBudget !== undefined) {
      this.#meter = new RequestMeter(options.requestBudget);
    }
    if (options.keepaliveIntervalMs > 0) {
      this.#keepalive = new Keepalive(this, options);
    }
  }

  /** Open streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Request bytes of unfinished gRPC messages held for this connection. */
  get unfinishedRequestBytes(): number {
    return this.#meter?.unfinished ?? 0;
  }

  /** Serves the connection until it closes. */
  async serve(): Promise<void> {
    this.sendPreface([
      [Setting.MAX_CONCURRENT_STREAMS, this.#server.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.#server.streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, this.#server.maxHeaderListSize],
      [Setting.ENABLE_PUSH, 0],
    ], false);
    this.armHandshake();
    this.#keepalive?.start();
    this.#armIdle(this.#server.idleTimeoutMs);
    await this.readLoop(this.#socket, true);
  }

  /**
   * Graceful close: GOAWAY(NO_ERROR) with the last stream we took; streams
   * already open run to their end, then the socket closes.
   */
  drain(): void {
    if (this.dead || this.#goawaySent) return;
    this.#goaway(ErrorCode.NO_ERROR);
    if (this.streams.size === 0) this.#finish();
  }

  /** GOAWAY(`code`) with the last stream we took: no stream opens after. */
  #goaway(code: number): void {
    this.#goawaySent = true;
    this.writer.bytes(goawayFrame(this.lastPeerStream, code));
  }

  /** Closes now: every open stream ends as cancelled. */
  destroy(): void {
    this.endConnection(ErrorCode.CANCEL, "closed", true);
  }

  // --- keepalive -------------------------------------------------------------

  /** A silent connection is always pinged, streams or not. */
  wantsPing(): boolean {
    return true;
  }

  // --- StreamHost ------------------------------------------------------------

  consumed(stream: H2ServerStream, bytes: number): void {
    this.#server.requestBudget?.addQueued(-bytes);
    if (this.dead) return;
    if (!stream.remoteEnded && !stream.destroyed) {
      this.creditStream(stream, bytes);
    }
    this.giveBack(bytes);
  }

  released(stream: H2ServerStream): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    this.#closed.remember(
      stream.id,
      stream.remoteEnded ? Closed.ENDED_BY_PEER : Closed.RESET_BY_US,
    );
    this.#meter?.release(stream);
    if (this.streams.size === 0) {
      this.#idleSince = Date.now();
      if (this.#goawaySent || this.#peerGoaway) this.#finish();
    }
  }

  // --- the engine's hooks ----------------------------------------------------

  protected isIdle(id: number): boolean {
    return id > this.lastPeerStream;
  }

  protected override closedStreamFrame(id: number, what: string): void {
    super.closedStreamFrame(id, what);
    if (this.#closed.frameAfterClose(id, what)) {
      this.writer.frame32(FrameType.RST_STREAM, id, ErrorCode.STREAM_CLOSED);
    }
  }

  protected onHeaderBlock(
    id: number,
    flags: number,
    fields: HeaderField[],
    tooLarge: number,
  ): void {
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const open = this.streams.get(id);
    if (open !== undefined) {
      // Trailers: they must end the stream and hold no pseudo-header; the
      // body must have had its content-length.
      if (open.remoteEnded) {
        this.streamError(open, ErrorCode.STREAM_CLOSED, "HEADERS after END");
      } else if (
        !endStream || this.selfDependent || open.contentLeft > 0
      ) {
        this.streamError(open, ErrorCode.PROTOCOL_ERROR, "bad trailers");
      } else if (tooLarge > 0) {
        open.remoteEnded = true;
        this.#headersTooLarge(open, fields, "trailer", tooLarge);
      } else if (trailerError(fields) !== undefined) {
        this.streamError(open, ErrorCode.PROTOCOL_ERROR, "bad trailers");
      } else if (open.pushEnd()) this.#ending.push(open);
      return;
    }
    if ((id & 1) === 0) throw protocolError(`HEADERS on even stream ${id}`);
    if (id <= this.lastPeerStream) return this.closedStreamFrame(id, "HEADERS");
    this.lastPeerStream = id;
    if (
      this.#goawaySent || this.streams.size >= this.#server.maxConcurrentStreams
    ) {
      // Streams opened after our GOAWAY for resets count as resets: a peer
      // that goes on opening them is ended.
      if (this.#calmed) this.#chargeReset();
      return this.#refuse(id, ErrorCode.REFUSED_STREAM);
    }
    if (this.selfDependent) return this.#refuse(id, ErrorCode.PROTOCOL_ERROR);
    if (tooLarge > 0) {
      // Not handed to the owner as a request: its headers are cut. It is
      // answered (431 or the owner's answer) and ends there; the rest of
      // the connection goes on (RFC 9113 §10.5.1).
      const s = this.#openStream(id, endStream);
      return this.#headersTooLarge(s, fields, "header", tooLarge);
    }
    const headers = toIncomingHeaders(fields);
    if (typeof headers === "string") {
      return this.#refuse(id, ErrorCode.PROTOCOL_ERROR);
    }
    const length = headers["content-length"];
    const declared = length === undefined ? -1 : contentLength(length);
    if (endStream && declared > 0) {
      return this.#refuse(id, ErrorCode.PROTOCOL_ERROR);
    }
    const s = this.#openStream(id, endStream);
    s.contentLeft = declared;
    if (this.#meter !== undefined) s.meter = new EnvelopeMeter();
    try {
      this.#owner.onStream(s, headers);
    } catch (e) {
      this.#owner.onError?.(e);
      s.close(ErrorCode.INTERNAL_ERROR);
    }
  }

  protected onStreamData(s: H2ServerStream, flags: number, d: DataFrame) {
    const { buf, from, to, len } = d;
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (s.contentLeft >= 0) {
      // A body that does not match its content-length is malformed
      // (RFC 9113 §8.1.1).
      s.contentLeft -= to - from;
      if (s.contentLeft < 0 || (endStream && s.contentLeft > 0)) {
        this.giveBack(len);
        this.streamError(s, ErrorCode.PROTOCOL_ERROR, "content-length");
        return;
      }
    }
    // Counted until consumed() (the handler read it, or it was dropped).
    this.#server.requestBudget?.addQueued(len);
    const padding = len - (to - from);
    if (padding > 0) {
      s.recvWindow -= padding;
      this.consumed(s, padding);
    }
    // Joined with the stream's other DATA of this read (endRead()).
    if (to > from && s.push(buf, from, to)) this.#reading.push(s);
    if (endStream && !s.destroyed && s.pushEnd()) this.#ending.push(s);
  }

  protected override parse(rb: ReadBuffer): void {
    this.#readAt = Date.now();
    let parsed = false;
    try {
      super.parse(rb);
      parsed = true;
    } finally {
      this.#endRead(parsed);
    }
  }

  /**
   * Hands each stream the DATA it got in this read as one chunk, metered
   * against the request budget first (once per read, not per frame); then
   * the streams that ended in it get their 'end', unless the read ended in
   * a connection error (which aborts them).
   */
  #endRead(parsed: boolean): void {
    const reading = this.#reading;
    const ending = this.#ending;
    try {
      for (let i = 0; i < reading.length; i++) this.#deliverRead(reading[i]);
    } finally {
      // A stream left out by a connection error is aborted by it, which
      // drops its views of the read buffer.
      reading.length = 0;
    }
    try {
      for (let i = 0; parsed && i < ending.length; i++) {
        const s = ending[i];
        try {
          s.endOfRead();
        } catch (e) {
          // A handler's bug ends its call, not the connection.
          this.#owner.onError?.(e);
          s.close(ErrorCode.INTERNAL_ERROR);
        }
      }
    } finally {
      ending.length = 0;
    }
  }

  #deliverRead(s: H2ServerStream): void {
    const chunk = s.takeRead();
    if (chunk === undefined) return;
    if (s.meter !== undefined && !this.#meter!.take(s, chunk, this.#owner)) {
      this.consumed(s, chunk.byteLength);
      return;
    }
    s.accept(chunk);
  }

  protected onStreamReset(s: H2ServerStream, code: number): void {
    const endedByPeer = s.remoteEnded;
    // Opening and resetting streams costs the peer nothing and us a call
    // each, outside MAX_CONCURRENT_STREAMS ("rapid reset",
    // CVE-2023-44487): a burst is fine, a sustained rate is not. Only
    // premature resets count (as Envoy's premature-reset check does): a
    // stream that lived PREMATURE_RESET_MS held a MAX_CONCURRENT_STREAMS
    // slot that long, which bounds their rate, and a proxy forwarding its
    // clients' cancels (an edge whose browsers leave at once) resets many
    // such streams in a burst.
    this.#chargeIfPremature(s);
    // The DATA that came before the reset in this read is the handler's.
    this.#deliverRead(s);
    s.abort(code);
    if (!endedByPeer) this.#closed.remember(s.id, Closed.RESET_BY_PEER);
  }

  /**
   * A stream the peer broke the protocol on (a WINDOW_UPDATE of 0, DATA
   * past its content-length or after its end, a bad PRIORITY or trailers)
   * is reset by us, but the peer chose to end it as surely as with its own
   * RST_STREAM, and as cheaply ("MadeYouReset", CVE-2025-8671): a
   * premature one is charged as a premature reset.
   */
  protected override streamError(
    s: H2ServerStream,
    code: number,
    message: string,
  ): void {
    this.#chargeIfPremature(s);
    super.streamError(s, code, message);
  }

  /**
   * The peer ended `s` early: a premature end is charged. Not after our
   * GOAWAY: no stream opens then, so the ends of those it let run are
   * bounded, and they are a proxy's users leaving (the proxy cannot take
   * them back); only new HEADERS count then.
   */
  #chargeIfPremature(s: H2ServerStream): void {
    if (this.#goawaySent) return;
    if (this.#readAt - s.openedAt < PREMATURE_RESET_MS) this.#chargeReset();
  }

  /**
   * Takes a token for a premature reset. Out of tokens, the peer gets
   * GOAWAY(ENHANCE_YOUR_CALM): streams already open run to their end, for
   * up to `calmGraceMs` (a proxy's other calls are not lost; it opens a new
   * connection), new ones are refused and charged. A peer that goes on
   * opening them past a second burst is cut off.
   */
  #chargeReset(): void {
    const now = this.#readAt;
    this.#resetTokens = Math.min(
      this.#resetBurst,
      this.#resetTokens + (now - this.#resetRefilled) * RESETS_PER_MS,
    );
    this.#resetRefilled = now;
    if (--this.#resetTokens >= 0) return;
    if (this.#resetTokens < -this.#resetBurst) {
      throw new H2ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        "too many stream resets",
      );
    }
    if (!this.#goawaySent) {
      this.#calmed = true;
      this.#goaway(ErrorCode.ENHANCE_YOUR_CALM);
      this.#owner.onResetFlood?.();
      const grace = this.#server.calmGraceMs;
      if (grace > 0) {
        this.#calmTimer = setTimeout(() => {
          this.endConnection(
            ErrorCode.ENHANCE_YOUR_CALM,
            "calmed for too many stream resets: grace over",
            false,
          );
        }, grace);
      }
    }
  }

  protected abortStream(s: H2ServerStream, code: number): void {
    s.abort(code);
  }

  protected onGoaway(): void {
    this.#peerGoaway = true;
    if (this.streams.size === 0) this.#finish();
  }

  protected endStreams(code: number): void {
    this.#keepalive?.stop();
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#calmTimer);
    for (const s of this.streams.values()) s.abort(code);
  }

  protected onHandshakeTimeout(): void {
    this.destroy();
  }

  protected onClosed(): void {
    this.#owner.closed(this);
  }

  protected override onBug(e: unknown): void {
    this.#owner.onError?.(e);
  }

  // --- streams and lifecycle -------------------------------------------------

  #openStream(id: number, endStream: boolean): H2ServerStream {
    const s = new H2ServerStream(
      this,
      id,
      this.opts.streamWindow,
      this.peerInitialWindow,
    );
    s.openedAt = this.#readAt;
    this.streams.set(s);
    if (endStream) s.remoteEnded = true;
    return s;
  }

  /**
   * A request's header list (or its trailers) decoded to `size` octets,
   * above our SETTINGS_MAX_HEADER_LIST_SIZE: the owner answers the stream
   * (gRPC: RESOURCE_EXHAUSTED), else it gets a 431; then it ends. `fields`
   * are the ones within the limit.
   */
  #headersTooLarge(
    s: H2ServerStream,
    fields: HeaderField[],
    what: "header" | "trailer",
    size: number,
  ): void {
    const reason =
      `request ${what} list of ${size} octets exceeds the limit of ${this.maxHeaderListSize} octets (SETTINGS_MAX_HEADER_LIST_SIZE)`;
    try {
      this.#owner.onHeadersTooLarge?.(s, reason, fields);
    } catch (e) {
      this.#owner.onError?.(e);
    }
    if (s.destroyed) return;
    if (!s.headersSent) {
      s.respond(HEADER_FIELDS_TOO_LARGE, { endStream: true });
    } else s.close(ErrorCode.ENHANCE_YOUR_CALM);
  }

  /** Resets a stream that was never opened, and remembers it. */
  #refuse(id: number, code: number): void {
    this.writer.frame32(FrameType.RST_STREAM, id, code);
    this.#closed.remember(id, Closed.RESET_BY_US);
  }

  /** Flushes, half-closes and closes once the last stream is gone. */
  #finish(): void {
    this.endConnection(ErrorCode.NO_ERROR, "drained", false);
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
    const timeout = this.#server.idleTimeoutMs;
    if (timeout <= 0 || this.dead) return;
    this.#idleTimer = setTimeout(() => {
      if (this.dead) return;
      const idleFor = this.streams.size === 0
        ? Date.now() - this.#idleSince
        : 0;
      if (idleFor >= timeout) this.destroy();
      else this.#armIdle(timeout - idleFor);
    }, ms);
  }
}
