/**
 * Drops HTTP/2 GOAWAY frames a client sends, before Deno's nghttp2 sees them.
 *
 * Deno 2.9.6's node:http2 server can abort the whole process
 * (`find_stream_on_goaway_func: Assertion 'stream->closed_next == NULL'`, or
 * a bare SIGSEGV) when it receives a client's GOAWAY after a connection that
 * carried ~100 streams. The abort happens inside nghttp2 before any JS event,
 * so no handler can catch it. A plain TCP close of the same connection is
 * harmless, and a client's GOAWAY carries nothing a server needs (it only
 * names the last server-pushed stream the client will accept, and servers
 * here never push): the client closes the connection right after it anyway,
 * and that EOF ends the session and its streams the normal way.
 *
 * The guard filters each accepted socket's incoming bytes in place (its
 * `push()`), before the http2 session reads them: bytes from the client are
 * split into frames and every GOAWAY frame (type 0x7) is left out; bytes to
 * the client are untouched. Frames are only counted, not copied, unless a
 * GOAWAY header is split across reads. An earlier version wrapped the socket
 * in a Duplex; that cost about 10% CPU on streaming paths, this costs
 * nothing measurable (BENCHMARKS.md).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import * as net from "node:net";
import { Buffer } from "node:buffer";

/** Length of the HTTP/2 client connection preface, `PRI * HTTP/2.0...`. */
const PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const GOAWAY = 0x7;

/** Splits a client's byte stream into frames and drops GOAWAY frames. */
export class GoawayDropper {
  #prefaceLeft = PREFACE_BYTES;
  #header = new Uint8Array(FRAME_HEADER_BYTES);
  #headerFill = 0;
  #payloadLeft = 0;
  #dropping = false;
  /** GOAWAY frames dropped so far. */
  dropped = 0;

  /** Returns the parts of `chunk` to pass on (usually `chunk` itself). */
  filter(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let i = 0;
    let passFrom = 0;
    if (this.#prefaceLeft > 0) {
      const k = Math.min(this.#prefaceLeft, chunk.length);
      this.#prefaceLeft -= k;
      i = k;
    }
    while (i < chunk.length) {
      if (this.#payloadLeft > 0) {
        const k = Math.min(this.#payloadLeft, chunk.length - i);
        if (this.#dropping) {
          if (i > passFrom) out.push(chunk.subarray(passFrom, i));
          passFrom = i + k;
        }
        this.#payloadLeft -= k;
        i += k;
        continue;
      }
      // A frame header starts here; it may straddle this chunk's end.
      const headerStart = i;
      const k = Math.min(
        FRAME_HEADER_BYTES - this.#headerFill,
        chunk.length - i,
      );
      this.#header.set(chunk.subarray(i, i + k), this.#headerFill);
      const startedEarlier = this.#headerFill > 0;
      this.#headerFill += k;
      i += k;
      if (this.#headerFill < FRAME_HEADER_BYTES) {
        // Hold the partial header back until its type is known.
        if (headerStart > passFrom) {
          out.push(chunk.subarray(passFrom, headerStart));
        }
        passFrom = chunk.length;
        break;
      }
      this.#headerFill = 0;
      const h = this.#header;
      this.#payloadLeft = (h[0] << 16) | (h[1] << 8) | h[2];
      this.#dropping = h[3] === GOAWAY;
      if (this.#dropping) {
        this.dropped++;
        if (headerStart > passFrom) {
          out.push(chunk.subarray(passFrom, headerStart));
        }
        passFrom = i;
      } else if (startedEarlier) {
        // The held-back header was not a GOAWAY: release it.
        out.push(h.slice());
        passFrom = i;
      }
    }
    if (passFrom === 0 && out.length === 0) return [chunk];
    if (chunk.length > passFrom) out.push(chunk.subarray(passFrom));
    return out;
  }
}

/**
 * Filters an accepted TCP socket in place so the http2 session never sees a
 * GOAWAY: the socket's `push()` (how received bytes enter the readable side)
 * passes each chunk through a {@link GoawayDropper}.
 *
 * Patching in place rather than wrapping the socket in a Duplex keeps the
 * session on the real socket: no extra stream hop per read or write, and
 * per-turn write batching (http2/batch_writes.ts) works on it unchanged.
 * Returns false when the socket has no `push()` to patch (nothing changed).
 */
export function guardSocket(socket: net.Socket, onDrop?: () => void): boolean {
  const target = socket as net.Socket & {
    push?: (chunk: unknown, encoding?: BufferEncoding) => boolean;
  };
  const push = target.push;
  if (typeof push !== "function") return false;
  const dropper = new GoawayDropper();
  target.push = function (chunk, encoding) {
    if (!(chunk instanceof Uint8Array)) return push.call(this, chunk, encoding);
    const before = dropper.dropped;
    const parts = dropper.filter(chunk);
    if (dropper.dropped > before) onDrop?.();
    let more = true;
    for (const part of parts) {
      // Usually the chunk itself; a view of it around a dropped frame.
      more = push.call(
        this,
        part === chunk
          ? chunk
          : Buffer.from(part.buffer, part.byteOffset, part.byteLength),
      );
    }
    return more;
  };
  return true;
}

/** A TCP listener that feeds a grpc-js server sockets guarded by {@link guardSocket}. */
export interface GuardedListener {
  readonly port: number;
  /** GOAWAY frames dropped on all connections so far. */
  readonly goawaysDropped: number;
  /** Stops accepting; grpc-js' tryShutdown/forceShutdown end the sessions. */
  close(): Promise<void>;
}

/**
 * Serves a grpc-js server on host:port with every connection guarded.
 *
 * Use instead of `server.bindAsync()`: grpc-js' connection injector takes
 * the guarded socket as if its own http2 server had accepted it, and its
 * shutdown methods close those sessions like any other.
 */
export function listenWithGoawayGuard(
  server: grpc.Server,
  host: string,
  port: number,
  onConnection?: (socket: net.Socket) => void,
): Promise<GuardedListener> {
  const injector = server.createConnectionInjector(
    grpc.ServerCredentials.createInsecure(),
  );
  let goawaysDropped = 0;
  const tcp = net.createServer((socket) => {
    if (!guardSocket(socket, () => goawaysDropped++)) {
      socket.destroy(new Error("cannot guard this socket against GOAWAY"));
      return;
    }
    // The http2 layer would turn Nagle off on a socket it created itself;
    // small responses otherwise wait ~40 ms for the peer's delayed ACK.
    socket.setNoDelay(true);
    onConnection?.(socket);
    injector.injectConnection(socket);
  });
  return new Promise((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, host, () => {
      tcp.off("error", reject);
      resolve({
        port: (tcp.address() as net.AddressInfo).port,
        get goawaysDropped() {
          return goawaysDropped;
        },
        close: () => new Promise<void>((done) => tcp.close(() => done())),
      });
    });
  });
}
