/**
 * Serves the embedded browser page (gen/web_assets.ts, built from web/ by
 * `deno task build:web`).
 *
 * The page is small and changes with every deploy, so browsers revalidate
 * (`no-cache`) and get a 304 when nothing changed.
 *
 * @module
 */
import { ASSETS } from "../gen/web_assets.ts";

export { type Asset, ASSETS } from "../gen/web_assets.ts";

const SECURITY_HEADERS: Record<string, string> = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  // 'self' covers the same-origin ws:/wss: bridge and the gRPC-Web fetches.
  "content-security-policy": "default-src 'self'; base-uri 'none'; " +
    "frame-ancestors 'none'; object-src 'none'",
};

/** Answers GET/HEAD for an embedded path; `undefined` for any other request. */
export function serveAsset(request: Request): Response | undefined {
  if (request.method !== "GET" && request.method !== "HEAD") return undefined;
  const asset = ASSETS[new URL(request.url).pathname];
  if (!asset) return undefined;
  const headers = new Headers({
    ...SECURITY_HEADERS,
    "content-type": asset.contentType,
    "cache-control": "no-cache",
    etag: asset.etag,
  });
  if (request.headers.get("if-none-match") === asset.etag) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(request.method === "HEAD" ? null : asset.body, {
    headers,
  });
}
