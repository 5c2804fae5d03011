/**
 * The header types of a server stream, as Node shapes them for grpc-js, and
 * what a stream needs from its connection.
 *
 * @module
 */
import type { H2ServerStream } from "./stream.ts";

/** Request headers as Node gives them: lowercase names, repeats as arrays. */
export type IncomingHeaders = Record<string, string | string[] | undefined>;

/** Response headers or trailers as Node takes them. */
export type OutgoingHeaders = Record<
  string,
  string | number | readonly string[] | undefined
>;

/** What a stream needs from its connection. */
export interface StreamHost {
  /** `{ socket: { remoteAddress, remotePort } }`, as grpc-js reads the peer. */
  readonly session: unknown;
  sendHeaders(
    stream: H2ServerStream,
    headers: OutgoingHeaders,
    endStream: boolean,
  ): void;
  /** Moves as much pending data as the windows allow onto the wire. */
  pump(stream: H2ServerStream): void;
  /** Frames an empty DATA frame with END_STREAM. */
  sendEnd(stream: H2ServerStream): void;
  /** RST_STREAM with `code`. */
  reset(stream: H2ServerStream, code: number): void;
  /** The stream took `bytes` off its receive queue: reopen the windows. */
  consumed(stream: H2ServerStream, bytes: number): void;
  /** The stream is closed both ways; forget it. */
  released(stream: H2ServerStream): void;
}
