/**
 * The options of a server connection and what it reports to its listener.
 *
 * @module
 */
import type { HeaderField } from "../../protocol/http2/hpack.ts";
import type { H2ServerConnection } from "./connection.ts";
import type { RequestBudget } from "./request_budget.ts";
import type { H2ServerStream, IncomingHeaders } from "./stream.ts";

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
  /**
   * Largest decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE). A
   * larger one is answered on its stream (`onHeadersTooLarge`, else 431);
   * a header block over twice this many encoded octets ends the connection
   * (ENHANCE_YOUR_CALM), as it costs us memory to take in.
   */
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
   * GOAWAY; see #armIdle in connection.ts); 0 keeps idle connections open.
   */
  idleTimeoutMs: number;
  /**
   * How long a connection sent GOAWAY(ENHANCE_YOUR_CALM) for too many
   * premature stream resets keeps the streams it had open; then it ends
   * with them (0: for as long as they last). Without a bound, one long
   * stream (a subscription) keeps it for ever, and a proxy whose users
   * cancel many calls piles up a calmed connection per burst.
   */
  calmGraceMs: number;
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
    calmGraceMs: 300_000,
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
   * The connection was sent GOAWAY(ENHANCE_YOUR_CALM) for too many
   * premature stream resets (rapid reset); its open streams run on.
   */
  onResetFlood?(): void;
  /**
   * A stream went over the request budget; answer it (it is reset with
   * ENHANCE_YOUR_CALM after this if still open).
   */
  onOverBudget?(stream: H2ServerStream, reason: string): void;
  /**
   * A request's header list (or trailers) decoded above `maxHeaderListSize`
   * (`reason` says by how much); `fields` are its first fields, within the
   * limit. The request is not given to `onStream`: answer `stream` here
   * (it gets a 431 after this if unanswered, RST_STREAM ENHANCE_YOUR_CALM
   * if answered but still open). Only this stream ends.
   */
  onHeadersTooLarge?(
    stream: H2ServerStream,
    reason: string,
    fields: readonly HeaderField[],
  ): void;
}
