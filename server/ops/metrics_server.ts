/**
 * The core's Prometheus endpoint: HTTP/1.1 `GET /metrics` on its own port
 * (`--metrics-port`), apart from the gRPC port so that a scraper never
 * shares a connection or a limit with clients.
 */
import { METRICS_CONTENT_TYPE } from "./metrics.ts";
import { serveResilient } from "../../net/resilient_serve.ts";

/** A listening metrics endpoint. */
export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves `text()` at /metrics on host:port (0 picks a free port). */
export function serveMetrics(
  host: string,
  port: number,
  text: () => Promise<string>,
  onError: (err: unknown) => void,
): MetricsServer {
  // Out of file descriptors, Deno.serve stops and its rejection would end
  // the core: listen again instead (net/resilient_serve.ts).
  const server = serveResilient({
    hostname: host,
    port,
    onListen: () => {},
    onError: (err) => {
      onError(err);
      return new Response("internal error\n", { status: 500 });
    },
  }, async (req) => {
    const { pathname } = new URL(req.url);
    if (pathname !== "/metrics") {
      return new Response("not found: the metrics are at /metrics\n", {
        status: 404,
      });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    return new Response(req.method === "HEAD" ? null : await text(), {
      headers: { "content-type": METRICS_CONTENT_TYPE },
    });
  }, onError);
  return {
    port: server.addr.port,
    close: () => server.shutdown(),
  };
}
