/**
 * Counts every call grpc-js serves (all but the direct unary path, which
 * counts its own) into {@linkcode CallStats}, by wrapping each method's
 * handler.
 *
 * Why not a grpc-js server interceptor: with any interceptor grpc-js puts an
 * intercepting call between the handler and its HTTP/2 stream, and the
 * core's direct stream writer and reader (server/grpc/raw_stream.ts,
 * raw_reader.ts) then find no stream and fall back to grpc-js's slower
 * per-message path. A wrapped handler sees the same call object as before.
 *
 * A call ends with the first of: the status its handler sends (callback,
 * `emit("error")` or `end()`), its deadline (DEADLINE_EXCEEDED, what its
 * client is told) or the client's cancel; each call is counted once.
 */
import {
  type MethodDefinition,
  type ServiceDefinition,
  status,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import type { CallStats } from "./call_stats.ts";

type Callback = (err: { code?: number } | null, ...rest: unknown[]) => void;

/**
 * `definition` with every method whose request is one message counted when
 * that message cannot be decoded: grpc-js then answers INTERNAL ("Error
 * deserializing request") before any handler runs, so countCalls() never
 * sees the call. (A stream of requests is decoded after its handler started,
 * which counts it.)
 */
export function countDecodeFailures(
  definition: ServiceDefinition,
  stats: CallStats,
): ServiceDefinition {
  const counted: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(definition)) {
    const method = m as MethodDefinition<unknown, unknown>;
    if (method.requestStream) {
      counted[name] = method;
      continue;
    }
    const decode = method.requestDeserialize;
    counted[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          stats.start(method.path);
          stats.end(method.path, status.INTERNAL, 0);
          throw err;
        }
      },
    };
  }
  return counted as ServiceDefinition;
}

/** `implementation` with every handler counted under its method's path. */
export function countCalls(
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
  stats: CallStats,
): UntypedServiceImplementation {
  const counted: UntypedServiceImplementation = { ...implementation };
  for (const [name, method] of Object.entries(definition)) {
    // grpc-js accepts handlers under the method's name or its originalName.
    const key = name in implementation
      ? name
      : (method as MethodDefinition<unknown, unknown>).originalName;
    if (key === undefined || !(key in implementation)) continue;
    counted[key] = countHandler(method, implementation[key], stats);
  }
  return counted;
}

function countHandler(
  method: MethodDefinition<unknown, unknown>,
  handler: UntypedHandleCall,
  stats: CallStats,
): UntypedHandleCall {
  const path = method.path;
  const callback = !method.responseStream;
  const run = handler as (call: EventEmitter, cb?: Callback) => void;
  return ((call: EventEmitter, cb?: Callback) => {
    const started = performance.now();
    let done = false;
    const end = (code: number) => {
      if (done) return;
      done = true;
      stats.end(path, code, performance.now() - started);
    };
    stats.start(path);
    call.once(
      "cancelled",
      () =>
        end(deadlinePassed(call) ? status.DEADLINE_EXCEEDED : status.CANCELLED),
    );
    if (callback) {
      run(call, (err, ...rest) => {
        end(err === null ? status.OK : err.code ?? status.UNKNOWN);
        cb!(err, ...rest);
      });
      return;
    }
    call.once(
      "error",
      (err: { code?: number }) => end(err.code ?? status.UNKNOWN),
    );
    call.once("finish", () => end(status.OK));
    run(call);
  }) as UntypedHandleCall;
}

/**
 * Whether `call` ended at its deadline. grpc-js and the direct stream path
 * end such a call with DEADLINE_EXCEEDED and then emit the same 'cancelled'
 * as for a client's cancel; their timer may fire within a millisecond of
 * the deadline as `Date.now()` reads it. The client's own timer usually
 * fires first: it counts from before the call went out and the server from
 * when its headers arrived, so the client's reset (RST_STREAM CANCEL, the
 * same as an explicit cancel) reaches the server up to a transit time before
 * the server's deadline. A cancel within DEADLINE_SLACK_MS of the deadline
 * is therefore counted as the deadline, as the client reported it.
 */
function deadlinePassed(call: EventEmitter): boolean {
  const deadline = (call as { getDeadline?(): Date | number }).getDeadline?.();
  if (deadline === undefined) return false;
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Date.now() + DEADLINE_SLACK_MS >= ms;
}

/** How long before its deadline a client's cancel counts as the deadline. */
const DEADLINE_SLACK_MS = 100;
