/**
 * One {@linkcode Upstream} over several cores: each call goes to the healthy
 * core with the fewest calls open (ties in turn), and a core that fails is
 * out at once and back when it answers again.
 *
 * Least-outstanding rather than plain round robin because most of a chat
 * edge's calls are long-lived streams: counting open calls spreads the
 * subscribers, not just the call starts, evenly over the cores.
 *
 * Health comes from two places. A call that ends UNAVAILABLE because of the
 * edge's own connection (both HTTP/2 clients word those statuses "upstream
 * ..."; a core's own UNAVAILABLE, e.g. its broker being down, does not count)
 * marks its core down and probes it at once. And every core is probed every
 * `probeIntervalMs` with an HTTP/2 PING on the client's own connection
 * (`Upstream.healthy()`, which dials when there is none): a killed core is
 * refused within one interval, a core that comes back answers within one.
 * Calls already running on a core that dies end UNAVAILABLE; their clients
 * call again and land on another core (and resume from their offset).
 *
 * A core that answers but says it cannot serve (grpc.health.v1 Check of
 * the whole server is NOT_SERVING: its history store or broker is down, or
 * it is shutting down) is asked every `readyIntervalMs` and takes calls
 * only when no core that serves is healthy: a core cut off from Redis while
 * the others reach it would fail every call it got. Anything else from the
 * check (SERVING, an error, no health service) counts as serving, so a
 * core is never kept out by the check alone.
 *
 * A core that stalls (paused, frozen, its host swapping: the connection
 * stays open and nothing answers) takes no new calls once a probe goes
 * unanswered, and once its probes have gone unanswered for `stallMs` the
 * calls still running on it end UNAVAILABLE too (`Upstream.abandon()`), so
 * their clients move on instead of hanging until the keepalive (30 s of
 * silence and 10 s more by default) or for ever.
 *
 * A call that failed after it may have reached a core is not retried here
 * (a SendMessage may be stored): only the client may decide. One the core
 * provably never got or never processed (`UpstreamStatus.unsent`: its
 * connection failed before the request was written, or the core's GOAWAY
 * or REFUSED_STREAM excluded it, as when a core drains for a restart) is
 * sent to another core, once per core, within the call's deadline, when its
 * request messages were all known up front (unary and server-streaming
 * calls); the client sees only the answer of the core that took it. One the
 * core itself refused (`UpstreamStatus.refused`: a GOAWAY, as for too many
 * stream resets on that connection, or REFUSED_STREAM) does not mark the
 * core down, and with no other core to take it goes to the last one once
 * more, on a new connection.
 *
 * @module
 */
import { Code } from "./status.ts";
import {
  type CallOptions,
  type MessageSource,
  PROBE_WAIT_MS,
  type RequestMessages,
  type Upstream,
  type UpstreamCall,
  type UpstreamStatus,
} from "./types.ts";

/** grpc.health.v1's Check of the whole server (an empty request: service ""). */
const HEALTH_CHECK = "/grpc.health.v1.Health/Check";
const EMPTY = new Uint8Array(0);
/** HealthCheckResponse: field 1 (status) as a varint, and NOT_SERVING. */
const STATUS_FIELD = 0x08;
const NOT_SERVING = 2;

/** A probe that took this much longer than that was not timed by the core. */
const LATE_MS = 1000;

/** Options of {@linkcode createBalancedUpstream}. */
export interface BalancerOptions {
  /** How often each core is probed; default 250 ms. */
  probeIntervalMs?: number;
  /** A probe not answered in this time marks the core down; default 500 ms. */
  probeTimeoutMs?: number;
  /**
   * Probes unanswered for this long end the calls running on the core
   * (UNAVAILABLE); default 5,000 ms, 0 never.
   */
  stallMs?: number;
  /**
   * How often each core's grpc.health.v1 status is asked; default 1,000
   * ms, 0 never.
   */
  readyIntervalMs?: number;
}

/** One core as the balancer sees it. */
export interface MemberState {
  readonly url: string;
  readonly healthy: boolean;
  /** False while its last health check said NOT_SERVING. */
  readonly serving: boolean;
  /** Calls open on it now. */
  readonly outstanding: number;
}

/** A balanced upstream, with its members' state for health endpoints. */
export interface BalancedUpstream extends Upstream {
  members(): MemberState[];
}

interface Member {
  url: string;
  upstream: Upstream;
  healthy: boolean;
  serving: boolean;
  /** A health check in flight. */
  checking: boolean;
  outstanding: number;
  probing: Promise<void> | undefined;
  /** When the first of the probes unanswered since the last answer began. */
  silentSince: number | undefined;
  /** Probes unanswered since the last answer. */
  misses: number;
}

/**
 * Creates the balancer over `urls`; `connect` builds one core's upstream.
 *
 * @example
 * ```ts
 * const upstream = createBalancedUpstream(
 *   ["http://10.0.0.1:50051", "http://10.0.0.2:50051"],
 *   (url) => createUpstream("h2", url, { maxMessageBytes: 4 << 20 }),
 * );
 * ```
 */
export function createBalancedUpstream(
  urls: readonly string[],
  connect: (url: string) => Upstream,
  options: BalancerOptions = {},
): BalancedUpstream {
  if (urls.length === 0) throw new RangeError("no upstream URLs");
  const probeIntervalMs = options.probeIntervalMs ?? 250;
  const probeTimeoutMs = options.probeTimeoutMs ?? 500;
  const stallMs = options.stallMs ?? 5000;
  // Optimistic until the first probe: a fresh edge serves at once.
  const members: Member[] = urls.map((url) => ({
    url,
    upstream: connect(url),
    healthy: true,
    serving: true,
    checking: false,
    outstanding: 0,
    probing: undefined,
    silentSince: undefined,
    misses: 0,
  }));
  let next = 0;
  let closed = false;
  /** Calls this balancer sent to another core (or once more to one). */
  let resends = 0;

  function probe(m: Member): Promise<void> {
    if (closed) return Promise.resolve();
    const began = performance.now();
    m.probing ??= (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<boolean>((r) =>
        timer = setTimeout(() => r(false), probeTimeoutMs)
      );
      const answer = m.upstream.healthy();
      try {
        m.healthy = await Promise.race([answer, late]);
      } finally {
        clearTimeout(timer);
      }
      // A late answer still counts, and the next probe waits for it.
      if (!m.healthy) m.healthy = await answer;
      if (m.healthy) {
        m.silentSince = undefined;
        m.misses = 0;
      } else silent(m, began);
    })().catch(() => {
      m.healthy = false;
      silent(m, began);
    }).finally(() => m.probing = undefined);
    return m.probing;
  }

  /**
   * A probe begun at `began` went unanswered (or failed). Calls are ended
   * only after two misses at least `stallMs` apart from the first one, and
   * never for a probe that took far longer than its own timeout: then this
   * process was not running (a pause of the edge, not of the core), and
   * the answer may be waiting unread.
   */
  function silent(m: Member, began: number): void {
    const now = performance.now();
    if (now - began > PROBE_WAIT_MS + LATE_MS) return;
    m.silentSince ??= began;
    m.misses++;
    const ms = Math.round(now - m.silentSince);
    if (
      stallMs > 0 && m.misses >= 2 && ms >= stallMs && m.outstanding > 0 &&
      !closed
    ) {
      m.upstream.abandon?.(`did not answer for ${ms} ms`);
    }
  }

  /** Asks `m` whether it serves (see the module's doc). */
  async function checkReady(m: Member): Promise<void> {
    if (closed || m.checking || !m.healthy) return;
    m.checking = true;
    try {
      const call = m.upstream.call(HEALTH_CHECK, [EMPTY], {
        metadata: {},
        // Its deadline ends it (or the upstream's close).
        signal: new AbortController().signal,
        timeoutMs: probeTimeoutMs,
      });
      let notServing = false;
      for await (const message of call.messages) {
        notServing = message.length === 2 && message[0] === STATUS_FIELD &&
          message[1] === NOT_SERVING;
      }
      const status = await call.status;
      m.serving = !(status.code === Code.OK && notServing);
    } finally {
      m.checking = false;
    }
  }

  const firstRound = Promise.all(members.map(probe));
  const timer = setInterval(() => {
    for (const m of members) void probe(m);
  }, probeIntervalMs);
  const readyIntervalMs = options.readyIntervalMs ?? 1000;
  const readyTimer = readyIntervalMs > 0
    ? setInterval(() => {
      for (const m of members) void checkReady(m).catch(() => {});
    }, readyIntervalMs)
    : undefined;

  /**
   * The healthy member with the fewest open calls, ties in turn, one that
   * serves before one that does not; none known healthy, the next in turn
   * (probes may be stale). With `tried` (a call sent again), only a healthy
   * member not in it, or none.
   */
  function pick(tried?: readonly Member[]): Member | undefined {
    const n = members.length;
    const start = next++ % n;
    let best: Member | undefined;
    for (let i = 0; i < n; i++) {
      const m = members[(start + i) % n];
      if (!m.healthy || tried?.includes(m)) continue;
      if (
        best === undefined || (m.serving && !best.serving) ||
        (m.serving === best.serving && m.outstanding < best.outstanding)
      ) best = m;
    }
    return best ?? (tried ? undefined : members[start]);
  }

  /** Starts the call on `m`, counted among its open calls until it ends. */
  function start(
    m: Member,
    path: string,
    requests: RequestMessages,
    opts: CallOptions,
  ): UpstreamCall {
    m.outstanding++;
    const inner = m.upstream.call(path, requests, opts);
    const status = inner.status.then((s: UpstreamStatus) => {
      m.outstanding--;
      // Not for a call the core refused: it answered (it may have told
      // only that connection to go away, for too many resets).
      if (
        s.code === Code.UNAVAILABLE && s.message.startsWith("upstream ") &&
        !s.refused
      ) {
        m.healthy = false;
        void probe(m);
      }
      return s;
    });
    const statusNow = inner.statusNow;
    return {
      headers: inner.headers,
      messages: inner.messages,
      status,
      statusNow: statusNow && (() => statusNow.call(inner)),
    };
  }

  function call(
    path: string,
    requests: RequestMessages,
    opts: CallOptions,
  ): UpstreamCall {
    const m = pick()!;
    const first = start(m, path, requests, opts);
    // Only a request known in full can be sent again, and only a client
    // that can tell a call was never processed (it settles at once).
    if (
      members.length < 2 || !Array.isArray(requests) ||
      first.statusNow === undefined || first.messages.nextBatch === undefined
    ) {
      return first;
    }
    const tried = [m];
    let again = false;
    const began = opts.timeoutMs === undefined ? 0 : performance.now();
    return new ResentCall(first, (s) => {
      if (!s.unsent || closed || opts.signal.aborted) return undefined;
      let timeoutMs = opts.timeoutMs;
      if (timeoutMs !== undefined) {
        timeoutMs -= performance.now() - began;
        if (timeoutMs <= 0) return undefined;
      }
      // No other core: the one that refused it once more, on a new
      // connection (gRPC's transparent retry, as a core alone gets).
      let other = pick(tried);
      if (other === undefined && s.refused && !again) {
        again = true;
        other = tried.at(-1)!;
      }
      if (other === undefined) return undefined;
      tried.push(other);
      resends++;
      return start(other, path, requests, { ...opts, timeoutMs });
    });
  }

  // Open connections over every core, when each core's client can tell.
  const connections = members.every((m) => m.upstream.connections)
    ? () => {
      let n = 0;
      for (const m of members) n += m.upstream.connections!();
      return n;
    }
    : undefined;

  return {
    call,
    connections,
    // Its own, and any its members made themselves.
    resends: () => {
      let n = resends;
      for (const m of members) n += m.upstream.resends?.() ?? 0;
      return n;
    },
    async healthy() {
      await firstRound;
      return members.some((m) => m.healthy);
    },
    members: () =>
      members.map(({ url, healthy, serving, outstanding }) => ({
        url,
        healthy,
        serving,
        outstanding,
      })),
    async close() {
      closed = true;
      clearInterval(timer);
      clearInterval(readyTimer);
      await Promise.all(members.map((m) => m.upstream.close()));
      await Promise.all(members.map((m) => m.probing));
    },
  };
}

/** What comes after an attempt that ended with a status: another, or none. */
type Resend = (status: UpstreamStatus) => UpstreamCall | undefined;

/**
 * A call that may move to another core: its headers, messages and status
 * are those of the attempt that was not sent again. An attempt is sent
 * again only when it ended `unsent`, before any answer, so nothing of it
 * reaches the consumer. Whether it is, `resend` decides once, when its
 * status is known.
 *
 * The call is final once an attempt has answered (its headers came while it
 * still runs) or ended without being sent again: `resend` (with the request
 * and the cores tried) is let go, and `nextBatch()` and the iterator hand
 * that attempt's own results straight through. A stream that lasts for
 * hours keeps no more than that.
 */
class ResentCall
  implements UpstreamCall, MessageSource, AsyncIterator<Uint8Array> {
  readonly headers: Promise<Record<string, string>>;
  readonly status: Promise<UpstreamStatus>;
  /** The iterator over #iteratorOf's messages, while they are read. */
  #iterator: AsyncIterator<Uint8Array> | undefined;
  #iteratorOf: UpstreamCall | undefined;
  /** The attempt running or answering now. */
  #current: UpstreamCall;
  /** The attempt after #current, once decided (undefined: not yet). */
  #next: UpstreamCall | null | undefined;
  #resend: Resend | undefined;

  constructor(first: UpstreamCall, resend: Resend) {
    this.#current = first;
    this.#resend = resend;
    this.status = this.#status(first);
    this.headers = this.#headers(first);
  }

  /** Its messages: the call itself (see next() and nextBatch()). */
  get messages(): MessageSource {
    return this;
  }

  /** The status once the last attempt has ended. */
  statusNow(): UpstreamStatus | undefined {
    while (true) {
      const s = this.#current.statusNow!();
      if (s === undefined || !this.#advance(s)) return s;
    }
  }

  /**
   * #current ended with `s`: moves to the attempt after it and returns
   * true, or makes #current final and returns false.
   */
  #advance(s: UpstreamStatus): boolean {
    if (this.#next === undefined) {
      let n: UpstreamCall | undefined;
      try {
        n = this.#resend?.(s);
      } catch {
        n = undefined; // a bug in starting the next: this status stands
      }
      this.#next = n ?? null;
    }
    const n = this.#next;
    if (n === null) {
      this.#final();
      return false;
    }
    this.#current = n;
    this.#next = undefined;
    return true;
  }

  /** #current is the answer: let go of what a resend needed. */
  #final(): void {
    this.#resend = undefined;
  }

  /** The status of `a` or of the attempt after it. */
  async #status(a: UpstreamCall): Promise<UpstreamStatus> {
    while (true) {
      const s = await a.status;
      // Another consumer (headers, messages, statusNow) may have moved on.
      if (a !== this.#current) {
        a = this.#current;
        continue;
      }
      if (!this.#advance(s)) return s;
      a = this.#current;
    }
  }

  async #headers(a: UpstreamCall): Promise<Record<string, string>> {
    while (true) {
      const h = await a.headers;
      if (a !== this.#current) {
        a = this.#current;
        continue;
      }
      // Headers while the attempt runs are its answer; headers that came
      // with its end are the answer unless it is sent again.
      const s = a.statusNow!();
      if (s === undefined) {
        this.#final();
        return h;
      }
      if (!this.#advance(s)) return h;
      a = this.#current;
    }
  }

  // --- the messages: this call is its own source and iterator (one
  // consumer), so that wrapping a call makes no closures ---

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const a = this.#current;
    if (this.#iteratorOf !== a) {
      this.#iteratorOf = a;
      this.#iterator = a.messages[Symbol.asyncIterator]();
    }
    const step = this.#iterator!.next();
    // Final: the attempt's own step, nothing added.
    return this.#resend === undefined ? step : this.#step(step, a);
  }

  return(value?: unknown): Promise<IteratorResult<Uint8Array>> {
    this.#iterator ??= this.#current.messages[Symbol.asyncIterator]();
    return this.#iterator.return?.(value) ??
      Promise.resolve({ done: true, value: undefined });
  }

  /** The current attempt's batches; at their end, the next attempt's. */
  nextBatch(): Promise<Uint8Array[] | undefined> {
    const a = this.#current;
    const batch = a.messages.nextBatch!();
    return this.#resend === undefined ? batch : this.#batch(batch, a);
  }

  async #batch(
    batch: Promise<Uint8Array[] | undefined>,
    a: UpstreamCall,
  ): Promise<Uint8Array[] | undefined> {
    const b = await batch;
    if (b !== undefined || !(await this.#moved(a))) return b;
    return this.nextBatch();
  }

  /** An iterator step of attempt `a`; at its end, the next attempt's. */
  async #step(
    step: Promise<IteratorResult<Uint8Array>>,
    a: UpstreamCall,
  ): Promise<IteratorResult<Uint8Array>> {
    const r = await step;
    if (!r.done || !(await this.#moved(a))) return r;
    return this.next();
  }

  /**
   * Attempt `a`'s messages ended: whether the call moved on to another
   * attempt (now, or already through its headers or status).
   */
  async #moved(a: UpstreamCall): Promise<boolean> {
    if (a !== this.#current) return true;
    const s = a.statusNow!() ?? await a.status;
    if (a !== this.#current) return true;
    return this.#advance(s);
  }
}
