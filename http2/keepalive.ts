/**
 * Keepalive PINGs (grpc's keepalive_time and keepalive_timeout), for both
 * roles: a host that died without closing its sockets (or a lost NAT entry)
 * would otherwise hang streaming calls until the kernel gives up.
 *
 * One timer per connection, re-armed once per tick rather than per frame.
 * A tick with no read since the last one sends a PING if the connection
 * wants one (the client only with open streams, grpc's
 * keepalive_permit_without_calls=false; the server always); the next tick,
 * the timeout later, ends the connection if still nothing arrived. So a
 * PING follows 1-2 intervals of silence, never more than one is
 * outstanding, and they are at least an interval apart, well inside peers'
 * PING-flood limits; a busy connection sends none. A timeout tick that fired
 * late (this process was blocked, e.g. by a burst of large publishes) waits
 * once more instead of ending a connection whose answer may be unread.
 *
 * @module
 */

/** The connection a {@linkcode Keepalive} watches. */
export interface KeepaliveTarget {
  /** Set by every read; the keepalive clears it. */
  heard: boolean;
  /** Whether a silent connection should be pinged now. */
  wantsPing(): boolean;
  sendPing(high: number, low: number): void;
  /** Ends the connection at once: the peer is gone (`message` says why). */
  abandon(message: string): void;
}

/** The timing of a {@linkcode Keepalive}. */
export interface KeepaliveOptions {
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
}

// The first half of a keepalive PING's opaque data ("keep"); other PINGs use
// 0 there, so their ACKs are never taken for a keepalive's.
const KEEPALIVE_PING = 0x6b656570;

/**
 * A timeout tick this much later than it was due fired after the event loop
 * was blocked: this process, not the peer, was silent, and the ACK may be
 * waiting unread in the socket. Such a tick waits once more before it gives
 * up on the peer.
 */
const LATE_MS = 100;

/** Keepalive of one connection; `start()` once the handshake is done. */
export class Keepalive {
  readonly #target: KeepaliveTarget;
  readonly #opts: KeepaliveOptions;
  #pending = false;
  /** When the outstanding PING's answer is due (performance.now()). */
  #due = 0;
  /** Whether the outstanding PING already got its second wait. */
  #waitedAgain = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #tick = () => this.#onTick();

  constructor(target: KeepaliveTarget, options: KeepaliveOptions) {
    this.#target = target;
    this.#opts = options;
  }

  start(): void {
    this.#timer = setTimeout(this.#tick, this.#opts.keepaliveIntervalMs);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  #onTick(): void {
    const t = this.#target;
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = this.#opts;
    if (t.heard) {
      t.heard = false;
      this.#pending = false;
    } else if (this.#pending) {
      const late = performance.now() - this.#due;
      if (!this.#waitedAgain && late > LATE_MS) {
        this.#waitedAgain = true;
        this.#due = performance.now() + keepaliveTimeoutMs;
        this.#timer = setTimeout(this.#tick, keepaliveTimeoutMs);
        return;
      }
      t.abandon(
        `did not answer a keepalive ping within ${keepaliveTimeoutMs} ms`,
      );
      return;
    } else if (t.wantsPing()) {
      this.#pending = true;
      this.#waitedAgain = false;
      this.#due = performance.now() + keepaliveTimeoutMs;
      t.sendPing(KEEPALIVE_PING, 0);
      this.#timer = setTimeout(this.#tick, keepaliveTimeoutMs);
      return;
    }
    this.#timer = setTimeout(this.#tick, keepaliveIntervalMs);
  }
}
