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
 * The guard is a Duplex between the TCP socket and the http2 session: bytes
 * to the client pass straight through; bytes from the client are split into
 * frames and every GOAWAY frame (type 0x7) is left out. Frames are only
 * counted, not copied, unless a GOAWAY header is split across reads.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import * as net from "node:net";
import { Duplex } from "node:stream";
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

/** Wraps an accepted TCP socket so the http2 session never sees a GOAWAY. */
export function guardGoaway(
  socket: net.Socket,
  onDrop?: () => void,
): Duplex {
  const dropper = new GoawayDropper();
  // The http2 layer would turn Nagle off on a socket it owned; small
  // responses otherwise wait ~40 ms for the peer's delayed ACK.
  socket.setNoDelay(true);
  const guarded = new Duplex({
    allowHalfOpen: false,
    read() {
      socket.resume();
    },
    write(chunk, _encoding, callback) {
      socket.write(chunk, callback);
    },
    // With writev, frames queued while the socket is busy (or while the
    // guard is corked, see socket_batching.ts) leave in one socket write.
    writev(chunks, callback) {
      socket.cork();
      for (let i = 0; i < chunks.length - 1; i++) socket.write(chunks[i].chunk);
      socket.write(chunks[chunks.length - 1].chunk, callback);
      socket.uncork();
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(err, callback) {
      socket.destroy();
      callback(err);
    },
  });
  socket.on("data", (chunk: Buffer) => {
    const before = dropper.dropped;
    let more = true;
    for (const part of dropper.filter(chunk)) more = guarded.push(part);
    if (dropper.dropped > before) onDrop?.();
    if (!more) socket.pause();
  });
  socket.on("end", () => guarded.push(null));
  socket.on("error", (err) => guarded.destroy(err));
  socket.on("close", () => guarded.destroy());
  // grpc-js reads these for getPeer() and channelz.
  Object.defineProperties(guarded, {
    remoteAddress: { get: () => socket.remoteAddress },
    remotePort: { get: () => socket.remotePort },
    localAddress: { get: () => socket.localAddress },
    localPort: { get: () => socket.localPort },
  });
  return guarded;
}

/** A TCP listener that feeds a grpc-js server through {@link guardGoaway}. */
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
 * the guarded Duplex as if its own http2 server had accepted it, and its
 * shutdown methods close those sessions like any other.
 */
export function listenWithGoawayGuard(
  server: grpc.Server,
  host: string,
  port: number,
  onConnection?: (guarded: Duplex) => void,
): Promise<GuardedListener> {
  const injector = server.createConnectionInjector(
    grpc.ServerCredentials.createInsecure(),
  );
  let goawaysDropped = 0;
  const tcp = net.createServer((socket) => {
    const guarded = guardGoaway(socket, () => goawaysDropped++);
    onConnection?.(guarded);
    injector.injectConnection(guarded);
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
