/**
 * The one door to grpc-js's private internals, and the one check of them.
 *
 * The core's fast paths reach below grpc-js's public API: the connection
 * injector's http2 server and its 'stream' listener (the h2 transport, the
 * direct unary path), the `http2Servers` map (socket batching), a call's
 * `call.call` (its HTTP/2 stream; the raw reader and writer). None of that
 * is a promise of grpc-js, so it is checked here once, when the core starts
 * (the first import of this module), against a probe server. Written for
 * grpc-js {@linkcode GRPC_JS_VERSION}; after an upgrade, review this folder
 * (server/grpcjs/) and its tests (tests/core_perf_*, core_h2_transport_test).
 *
 * When the check fails, every fast path falls back to grpc-js's public API
 * (`--transport h2` refuses to start and names `--transport node`), so an
 * unexpected grpc-js costs speed, never correctness.
 *
 * @module
 */
import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";

/** The grpc-js release whose internals this folder was written against. */
export const GRPC_JS_VERSION = "1.14.7";

/** A grpc-js Server's private fields that the fast paths use. */
interface ServerInternals {
  http2Servers: Map<unknown, unknown>;
  onStreamOpened(stream: unknown): void;
}

/** A call's BaseServerInterceptingCall (`call.call`), as far as it is used. */
export interface BaseCallInternals<S extends EventEmitter = EventEmitter> {
  stream: S;
  cancelled: boolean;
  incomingEncoding: string;
  maxReceiveMessageSize: number;
  maxSendMessageSize: number;
  readQueue: unknown[];
  maybeSendMetadata(): void;
}

/**
 * Why grpc-js's internals are not usable, or undefined when they are: the
 * start-up check, run once.
 */
export const grpcJsLayoutProblem: string | undefined = probe();

function probe(): string | undefined {
  const server = new Server({ "grpc.enable_channelz": 0 });
  try {
    const internals = server as unknown as Partial<ServerInternals>;
    if (!(internals.http2Servers instanceof Map)) {
      return "no http2Servers map on the Server";
    }
    if (typeof internals.onStreamOpened !== "function") {
      return "no onStreamOpened() on the Server";
    }
    server.createConnectionInjector(ServerCredentials.createInsecure());
    const [created] = internals.http2Servers.keys();
    const emitter = created as Partial<EventEmitter> | undefined;
    if (
      typeof emitter?.listeners !== "function" ||
      emitter.listeners("stream").length !== 1
    ) {
      return "the connection injector's http2 server has no single 'stream' listener";
    }
    return undefined;
  } catch (err) {
    return `probing grpc-js failed: ${(err as Error).message}`;
  } finally {
    server.forceShutdown();
  }
}

/**
 * The http2 servers (node:http2 or the injector's) a grpc-js server has now;
 * none when the layout check failed.
 */
export function http2ServersOf(server: Server): EventEmitter[] {
  if (grpcJsLayoutProblem !== undefined) return [];
  const servers = (server as unknown as Partial<ServerInternals>).http2Servers;
  return servers instanceof Map ? [...servers.keys()] as EventEmitter[] : [];
}

/** grpc-js's per-stream bookkeeping (channelz, session idle tracking). */
export function streamOpenedHook(
  server: Server,
): (stream: unknown) => void {
  const hook = (server as unknown as Partial<ServerInternals>).onStreamOpened;
  return typeof hook === "function" ? hook.bind(server) : () => {};
}

/**
 * A call's grpc-js internals with its HTTP/2 stream, or undefined when the
 * layout check failed or this call does not have them (then the caller
 * uses the public API).
 */
export function baseCallOf<S extends EventEmitter>(
  call: EventEmitter,
): BaseCallInternals<S> | undefined {
  if (grpcJsLayoutProblem !== undefined) return undefined;
  const base = (call as unknown as { call?: Partial<BaseCallInternals<S>> })
    .call;
  const stream = base?.stream;
  if (
    !base || !stream || typeof stream.on !== "function" ||
    typeof stream.listeners !== "function" ||
    typeof base.cancelled !== "boolean" ||
    typeof base.incomingEncoding !== "string" ||
    typeof base.maxReceiveMessageSize !== "number" ||
    typeof base.maxSendMessageSize !== "number" ||
    !Array.isArray(base.readQueue) ||
    typeof base.maybeSendMetadata !== "function"
  ) {
    return undefined;
  }
  return base as BaseCallInternals<S>;
}
