/**
 * Per client IP limits at the edge: concurrent requests (a streaming call
 * counts until its response ends) and concurrent WebSocket bridge sockets.
 *
 * Deno.serve hands the handler each request with its peer address and a
 * `completed` promise, not the TCP connections themselves, so the unit here
 * is the request: on HTTP/1.1 that is a connection in use, on HTTP/2 a
 * stream. A refused request gets RESOURCE_EXHAUSTED in its protocol's form
 * (gRPC-Web and native gRPC: a trailers-only response; a Connect stream: an
 * end-stream message; Connect unary and the rest: HTTP 429 with a Connect
 * error body).
 *
 * @module
 */
import { Code, encodeGrpcMessage } from "../protocol/mod.ts";
import { connectErrorAnswer } from "../protocol/connect_error_answer.ts";
import { ConcurrencyLimit } from "../limits/concurrency_limit.ts";
import { ipKey } from "../net/ip_key.ts";

/** Takes a slot for an IP: its release, or undefined when the IP is at its limit. */
export type IpSlot = (ip: string) => (() => void) | undefined;

/** A slot taker for `max` per IP; undefined when `max` is 0 (no limit). */
export function ipSlots(max: number): IpSlot | undefined {
  if (max === 0) return undefined;
  const limit = new ConcurrencyLimit(max);
  return (ip) => limit.acquire(ip);
}

/**
 * What a client's limits count by: its address from Deno.serve's handler
 * info (Hono's `env`), or with `trustedHops` > 0 from `X-Forwarded-For`,
 * keyed by {@linkcode ipKey}; undefined without an address (not TCP).
 *
 * With `trustedHops` = N, N proxies that each append the address they saw
 * stand in front of the edge, so the client is the N-th entry from the
 * right: the right-most one no trusted proxy wrote. Entries further left
 * are whatever the client sent and are never used. A header with fewer
 * entries than N (a request that came another way) gives its left-most
 * entry; none at all gives the TCP peer.
 */
export function clientIp(
  info: unknown,
  headers?: Headers,
  trustedHops = 0,
): string | undefined {
  const addr = (info as Partial<Deno.ServeHandlerInfo> | undefined)?.remoteAddr;
  if (!addr || !("hostname" in addr)) return undefined;
  if (trustedHops > 0) {
    const forwarded = headers?.get("x-forwarded-for");
    if (forwarded) {
      const hops = forwarded.split(",");
      const hop = hops[Math.max(0, hops.length - trustedHops)].trim();
      if (hop !== "") return ipKey(hop);
    }
  }
  return ipKey(addr.hostname);
}

/** The answer to a request over its IP's limit. */
export function tooManyRequests(
  request: Request,
  max: number,
  cors: [string, string][],
): Response {
  return refusedCall(
    request,
    Code.RESOURCE_EXHAUSTED,
    429,
    "resource_exhausted",
    `too many concurrent requests from this address (limit ${max})`,
    cors,
  );
}

/**
 * The answer to a call refused before it started, in its protocol's form:
 * gRPC `code`, or for Connect `connectCode` (HTTP `httpStatus` when unary).
 */
export function refusedCall(
  request: Request,
  code: number,
  httpStatus: number,
  connectCode: string,
  message: string,
  cors: [string, string][],
): Response {
  const type = request.headers.get("content-type") ?? "";
  // gRPC-Web, and native gRPC clients too: both read a trailers-only status.
  if (type.startsWith("application/grpc")) {
    return new Response(null, {
      status: 200,
      headers: [
        ...cors,
        ["content-type", type.split(";")[0]],
        ["grpc-status", String(code)],
        ["grpc-message", encodeGrpcMessage(message)],
      ],
    });
  }
  return connectErrorAnswer(request, httpStatus, connectCode, message, cors);
}
