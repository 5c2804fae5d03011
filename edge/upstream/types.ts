/**
 * The edge's view of the core: one method that runs any gRPC call as raw
 * message bytes, so handlers never decode protobuf just to forward it.
 *
 * Kept as an interface so the transport can be swapped: the default is the
 * edge's own HTTP/2 client (http2/client/), the fallback node:http2 (which
 * denoland/deno#33709 reports as unreliable on Deno Deploy for grpc-js); a
 * fetch-based or WebSocket-based upstream can slot in here.
 *
 * @module
 */

/** The end of a call: a gRPC status code, its message, and trailers. */
export interface UpstreamStatus {
  code: number;
  message: string;
  /** Trailer metadata without grpc-status / grpc-message. */
  trailers: Record<string, string>;
  /**
   * The core never got or never processed the call (an UNAVAILABLE the
   * client can tell that of: its connection failed before the request was
   * written, or a GOAWAY or REFUSED_STREAM excluded it), so sending it to
   * another core cannot repeat it. Unset when not known.
   */
  unsent?: boolean;
  /**
   * With `unsent`: the core itself refused it (GOAWAY, REFUSED_STREAM), so
   * it is up and answering, only not taking this call on that connection.
   */
  refused?: boolean;
}

/**
 * Response messages. A source that can also hands over everything already
 * received at once (`nextBatch`, see MessageQueue), which the gRPC-Web
 * handler writes to the browser as one chunk.
 */
export interface MessageSource extends AsyncIterable<Uint8Array> {
  nextBatch?(): Promise<Uint8Array[] | undefined>;
}

/** One running call. */
export interface UpstreamCall {
  /** Response metadata; resolves (maybe empty) before the first message or at the end. */
  headers: Promise<Record<string, string>>;
  /** Encoded protobuf messages, no envelope. */
  messages: MessageSource;
  /** Resolves when the call ends; never rejects. */
  status: Promise<UpstreamStatus>;
  /**
   * The status once the call has ended, undefined before: what `status`
   * resolves to, without waiting a turn (upstreams that can tell at once).
   */
  statusNow?(): UpstreamStatus | undefined;
}

/** Per-call options. */
export interface CallOptions {
  /** Request metadata, already filtered to what may be forwarded. */
  metadata: Record<string, string>;
  /**
   * Aborting cancels the call at once (RST_STREAM CANCEL). The status is
   * CANCELLED, or the reason's code when the reason is a StatusError, or
   * DEADLINE_EXCEEDED for a TimeoutError.
   */
  signal: AbortSignal;
  /** Deadline relative to now; sent as grpc-timeout and enforced here too. */
  timeoutMs?: number;
}

/** Request messages: streamed, or all known before the call. */
export type RequestMessages =
  | AsyncIterable<Uint8Array>
  | readonly Uint8Array[];

/** How long `Upstream.healthy()` waits for the core's PING answer. */
export const PROBE_WAIT_MS = 2000;

/** A connection to the core. */
export interface Upstream {
  /**
   * `requests`: the request messages as they come, or all of them when the
   * caller has read them already (a unary body), which is written at once.
   */
  call(
    path: string,
    requests: RequestMessages,
    options: CallOptions,
  ): UpstreamCall;
  /** Whether the core answers right now. */
  healthy(): Promise<boolean>;
  /** Open connections to the core (for metrics), if the client can tell. */
  connections?(): number;
  /**
   * Calls sent again so far because a core refused them unprocessed or
   * never got them (for metrics), if the client can tell.
   */
  resends?(): number;
  /**
   * The core stopped answering: every call running on it ends UNAVAILABLE
   * with `message` and its connections are dropped (the next call dials
   * afresh).
   */
  abandon?(message: string): void;
  /** Cancels running calls and closes the connection. */
  close(): Promise<void>;
}
