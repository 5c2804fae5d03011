/**
 * One record per call through the edge, and what happens when it ends: the
 * metrics are updated and one log line is written.
 *
 * The handlers add body byte counts to the record as chunks pass (an
 * addition per chunk, nothing else) and call `end()` once the response is
 * complete; every later `end()` is ignored, so the several ways a call can
 * finish (status, cancel, a broken body) need no coordination. The log line
 * is built there, once per call, never per message.
 *
 * @module
 */
import type { LogFormat } from "../config.ts";
import { codeName, type EdgeMetrics } from "./metrics.ts";
import { LineRation } from "../../limits/line_ration.ts";

/** How a call reached the edge. */
export type CallProtocol =
  | "grpc-web"
  | "grpc-web-text"
  | "connect"
  | "websocket"
  | "grpc";

/** What {@linkcode CallObserver} needs. */
export interface CallObserverOptions {
  metrics: EdgeMetrics;
  /** Paths of the served methods (`/pkg.Service/Method`): metric labels. */
  knownPaths: ReadonlySet<string>;
  logFormat: LogFormat;
  /** Where lines go; default console.log. */
  write?: (line: string) => void;
  /** The wall clock, in ms, for the refusal lines' seconds; default Date.now. */
  now?: () => number;
}

/** A call in progress; see the module comment. */
export class CallRecord {
  /** Request body bytes as received (before base64 or gzip decoding). */
  bytesIn = 0;
  /** Response body bytes as sent. */
  bytesOut = 0;
  /** The status, when known before the end (Connect sets it from upstream). */
  code: number | undefined;
  /** Refused before it started (its log lines are rationed). */
  refusal = false;
  #ended = false;

  constructor(
    readonly observer: CallObserver,
    readonly protocol: CallProtocol,
    readonly path: string,
    readonly startedAt: number,
  ) {}

  /** The call is over with status `code`; only the first end counts. */
  end(code: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.code = code;
    this.observer.ended(this);
  }

  /** True once {@linkcode end} ran. */
  get ended(): boolean {
    return this.#ended;
  }
}

/**
 * Log lines for calls refused at the door (`--max-requests-per-ip`) per
 * second at most: refusals come at the rate a client floods, and a line
 * each would let one client fill the log; past it they are counted and
 * summed up in one line.
 */
export const REFUSAL_LINES_PER_SECOND = 20;

/** Starts call records and turns ended ones into metrics and log lines. */
export class CallObserver {
  readonly metrics: EdgeMetrics;
  readonly #known: ReadonlySet<string>;
  readonly #format: LogFormat;
  readonly #write: (line: string) => void;
  /** Lines for refused calls: rationed (`refused()`). */
  readonly #refusals: LineRation;

  constructor(options: CallObserverOptions) {
    this.metrics = options.metrics;
    this.#known = options.knownPaths;
    this.#format = options.logFormat;
    this.#write = options.write ?? console.log;
    this.#refusals = new LineRation(
      REFUSAL_LINES_PER_SECOND,
      (n) => this.#writeUnlogged(n),
      options.now,
    );
  }

  /** A call starts now. */
  start(protocol: CallProtocol, path: string): CallRecord {
    this.metrics.callStarted(protocol);
    return new CallRecord(this, protocol, path, performance.now());
  }

  /**
   * A call refused before it started (`code`, e.g. RESOURCE_EXHAUSTED for
   * `--max-requests-per-ip`): counted like any call; logged one by one up
   * to {@linkcode REFUSAL_LINES_PER_SECOND}, the rest summed up.
   */
  refused(protocol: CallProtocol, path: string, code: number): void {
    const call = new CallRecord(this, protocol, path, performance.now());
    this.metrics.callStarted(protocol);
    call.refusal = true;
    call.end(code);
  }

  /** Writes a pending refusal summary now and stops its timer. */
  close(): void {
    this.#refusals.close();
  }

  #writeUnlogged(n: number): void {
    const msg = `${n} more refused calls in that second, not logged one by one`;
    this.#write(
      this.#format === "json"
        ? JSON.stringify({
          time: isoNow(),
          level: "warn",
          component: "edge",
          msg,
          refused: n,
        })
        : `${isoNow()} ${msg}`,
    );
  }

  /** Called by {@linkcode CallRecord.end}. */
  ended(call: CallRecord): void {
    const ms = performance.now() - call.startedAt;
    const code = call.code!;
    const method = this.#known.has(call.path) ? call.path.slice(1) : "unknown";
    this.metrics.callEnded(
      call.protocol,
      method,
      code,
      ms / 1000,
      call.bytesIn,
      call.bytesOut,
    );
    if (this.#format !== "off" && (!call.refusal || this.#refusals.take())) {
      this.#write(formatCallLine(this.#format, call, code, ms));
    }
  }
}

/** Lines held before a write even if the timer has not fired. */
const MAX_BUFFERED_LINES = 512;

/**
 * Joins log lines into one write every `delayMs` (or every 512 lines):
 * `console.log` costs about 10 µs per call, as much as a sixth of the
 * edge's CPU for a unary call, and one write for many lines costs about
 * what one line did. A line waits at most `delayMs`; `flush()` writes
 * what is held (at shutdown, and before a lifecycle line, to keep order).
 */
export class LineBuffer {
  readonly #sink: (text: string) => void;
  readonly #delayMs: number;
  #lines: string[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(sink: (text: string) => void = console.log, delayMs = 10) {
    this.#sink = sink;
    this.#delayMs = delayMs;
  }

  /** Holds a line for the next write (bound: pass it around as is). */
  readonly push = (line: string): void => {
    this.#lines.push(line);
    if (this.#lines.length >= MAX_BUFFERED_LINES) this.flush();
    else this.#timer ??= setTimeout(this.flush, this.#delayMs);
  };

  /** Writes every held line now. */
  readonly flush = (): void => {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0) return;
    const text = this.#lines.join("\n");
    this.#lines = [];
    this.#sink(text);
  };
}

const PLAIN = /^[\w./~-]{1,256}$/;

// Calls that end in the same millisecond share one formatted time:
// toISOString() was about a microsecond per line.
let isoAt = -1;
let isoText = "";
function isoNow(): string {
  const now = Date.now();
  if (now !== isoAt) {
    isoAt = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

/** One log line for an ended call, in the given format. */
export function formatCallLine(
  format: "text" | "json",
  call: CallRecord,
  code: number,
  ms: number,
): string {
  const time = isoNow();
  const duration = Math.round(ms * 1000) / 1000;
  // A hostile path is cut and quoted so that it cannot forge a second line.
  const path = call.path.length > 256 ? call.path.slice(0, 256) : call.path;
  if (format === "json") {
    return JSON.stringify({
      time,
      level: "info",
      component: "edge",
      msg: "call",
      protocol: call.protocol,
      method: path,
      code,
      status: codeName(code),
      duration_ms: duration,
      bytes_in: call.bytesIn,
      bytes_out: call.bytesOut,
    });
  }
  return `${time} call ${call.protocol} ${
    PLAIN.test(path) ? path : JSON.stringify(path)
  } ${codeName(code)} ${duration}ms in=${call.bytesIn} out=${call.bytesOut}`;
}
