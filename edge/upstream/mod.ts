/**
 * Picks the upstream HTTP/2 client by name, so the edge's entry point and
 * every test build their upstream the same way.
 *
 * @module
 */
import type { UpstreamClient } from "../config.ts";
import { type BalancerOptions, createBalancedUpstream } from "./balancer.ts";
import { createH2Upstream } from "./h2_upstream.ts";
import { createHttp2Upstream } from "./http2.ts";
import type { Upstream } from "./types.ts";

export type { Upstream, UpstreamCall, UpstreamStatus } from "./types.ts";

/** What both clients take. */
export interface UpstreamOptions {
  /** Largest response message accepted from the core. */
  maxMessageBytes: number;
  /** PEM CA for an https:// core with a private certificate. */
  ca?: string;
  /** h2 only: keepalive PING after this much silence (0 = off). */
  keepaliveIntervalMs?: number;
}

/**
 * Creates the upstream to `url`: "h2" is the edge's own HTTP/2 client on
 * `Deno.connect`/`Deno.connectTls` (the default), "node" the node:http2 one.
 */
export function createUpstream(
  client: UpstreamClient,
  url: string,
  options: SingleOptions,
): Upstream {
  return client === "h2"
    ? createH2Upstream(url, options)
    : createHttp2Upstream(url, options);
}

/** The h2 client's own resend of refused calls: only when it is alone. */
type SingleOptions = UpstreamOptions & { retryRefused?: boolean };

/**
 * The upstream to every core in `urls`: one core is its client as is; with
 * several, calls are balanced over the healthy ones (see balancer.ts).
 */
export function createUpstreams(
  client: UpstreamClient,
  urls: readonly string[],
  options: UpstreamOptions & BalancerOptions,
): Upstream {
  if (urls.length === 1) return createUpstream(client, urls[0], options);
  return createBalancedUpstream(
    urls,
    // The balancer sends a refused call to another core instead.
    (url) => createUpstream(client, url, { ...options, retryRefused: false }),
    options,
  );
}
