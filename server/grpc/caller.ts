/**
 * The caller of a grpc-js call (server/auth/access.ts), found before its
 * handler runs, and a long stream's end when the caller's token expires.
 *
 * A token not in the authenticator's cache is verified asynchronously: the
 * handler then starts when that is done (grpc-js reads no request bytes
 * until the handler asks), or not at all if the client cancelled meanwhile.
 */
import type { Metadata, ServiceError } from "@grpc/grpc-js";
import type { Caller } from "../auth/access.ts";
import type { HandlerContext } from "./context.ts";
import type { StreamControl } from "./stream.ts";
import { toServiceError } from "./status.ts";
import { ExpirySweep } from "./expiry.ts";

/**
 * What every server call has: grpc-js's calls their metadata, the direct
 * streaming path's (server/grpcjs/direct_stream.ts) the header itself.
 */
interface AnyCall {
  readonly metadata?: Metadata;
  readonly authorization?: string | readonly string[];
  readonly cancelled: boolean;
  getPeer(): string;
}

/**
 * The first `authorization` value of a call, from grpc-js's metadata (a
 * list) or the direct path's HTTP/2 headers (a string, or a list when the
 * header is repeated), so both paths read a repeated header the same way.
 */
export function authorizationOf(
  values: Metadata | string | readonly unknown[] | undefined,
): string | undefined {
  const first = typeof values === "object" && !Array.isArray(values)
    ? (values as Metadata).get("authorization")[0]
    : Array.isArray(values)
    ? values[0]
    : values;
  return typeof first === "string" ? first : undefined;
}

/**
 * `{remoteAddress}:{remotePort}` of an HTTP/2 session, as grpc-js's
 * getPeer() says it, so both paths count a connection under one key.
 */
export function peerOf(session: unknown): string {
  const socket = (session as {
    socket?: { remoteAddress?: string; remotePort?: number };
  } | undefined)?.socket;
  return socket?.remoteAddress
    ? `${socket.remoteAddress}:${socket.remotePort ?? ""}`
    : "unknown";
}

/**
 * Wraps a handler so that it runs with its caller. `reject` ends the call
 * with an error status when the caller is not authenticated.
 */
export function withCaller<C extends AnyCall, A extends unknown[]>(
  ctx: HandlerContext,
  reject: (call: C, err: ServiceError, ...rest: A) => void,
  handler: (call: C, caller: Caller, ...rest: A) => void,
): (call: C, ...rest: A) => void {
  return (call, ...rest) => {
    let caller: Caller | Promise<Caller>;
    try {
      caller = ctx.access.caller(
        authorizationOf(call.metadata ?? call.authorization),
        () => call.getPeer(),
      );
    } catch (err) {
      reject(call, toServiceError(err), ...rest);
      return;
    }
    if (!(caller instanceof Promise)) {
      handler(call, caller, ...rest);
      return;
    }
    caller.then((c) => {
      if (!call.cancelled) handler(call, c, ...rest);
    }, (err) => {
      if (!call.cancelled) {
        reject(
          call,
          toServiceError(err, (e) => ctx.log.error("auth failed", e)),
          ...rest,
        );
      }
    });
  };
}

/** The streams of this process whose callers' tokens expire. */
const expiries = new ExpirySweep();

/**
 * Ends `stream` with UNAUTHENTICATED when the caller's token expires (within
 * expiry.ts's grain), with one timer for every stream.
 */
export function endAtExpiry(
  ctx: HandlerContext,
  stream: StreamControl,
  caller: Caller,
): void {
  const inMs = ctx.access.expiresInMs(caller);
  if (inMs === undefined) return;
  stream.defer(expiries.add(stream, inMs));
}
