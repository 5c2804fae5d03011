/**
 * The page's embedded assets (edge/assets.ts), served compressed when the
 * browser accepts it: brotli, else gzip, else as they are, each with its own
 * ETag and a 304 for a matching If-None-Match.
 *
 * Each variant is compressed once, on its first request, and kept: the
 * assets are constants, so compressing per request (as a generic middleware
 * or Deno.serve's automatic compression would) is waste. Compression is
 * lazy so that starting an edge, which tests do often, costs nothing. gzip
 * (level 9, ~8 ms for the bundle) runs inline; brotli at quality 11 takes
 * ~300 ms, so it runs on zlib's thread pool and gzip is served until it is
 * ready.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { brotliCompress, constants, gzipSync } from "node:zlib";
import { ASSETS, serveAsset } from "./assets.ts";

type Encoding = "br" | "gzip" | "identity";

interface Variant {
  body: Uint8Array<ArrayBuffer>;
  etag: string;
}

interface StaticAsset {
  /** The generated headers (type, cache-control, security) of the asset. */
  headers: [string, string][];
  source: Uint8Array<ArrayBuffer>;
  /** The ETag of the uncompressed asset, quoted. */
  etag: string;
  variants: Partial<Record<Encoding, Variant>>;
  /** Set once brotli compression has started. */
  brotli?: boolean;
}

/** Keeps a variant of the asset, with its ETag. */
function variant(
  asset: StaticAsset,
  encoding: Encoding,
  body: Uint8Array<ArrayBuffer>,
): Variant {
  const etag = encoding === "identity"
    ? asset.etag
    : `${asset.etag.slice(0, -1)}-${encoding}"`;
  return asset.variants[encoding] = { body, etag };
}

/** Starts brotli for an asset on zlib's thread pool, once. */
function startBrotli(asset: StaticAsset): void {
  if (asset.brotli) return;
  asset.brotli = true;
  brotliCompress(asset.source, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: asset.source.byteLength,
    },
  }, (err: Error | null, out: Buffer) => {
    // Without brotli the asset stays served gzipped.
    if (err === null) variant(asset, "br", new Uint8Array(out));
  });
}

/**
 * Creates the handler for the asset paths; `undefined` for other paths or
 * methods.
 */
export function createStaticHandler(): (
  request: Request,
) => Response | undefined {
  const assets = new Map<string, StaticAsset>();
  for (const [path, asset] of Object.entries(ASSETS)) {
    // The generated module knows the asset's headers; take them from it.
    const sample = serveAsset(new Request(`http://edge${path}`))!;
    void sample.body?.cancel();
    assets.set(path, {
      headers: [...sample.headers],
      source: new TextEncoder().encode(asset.body),
      etag: asset.etag,
      variants: {},
    });
  }
  return (request) => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return undefined;
    }
    const asset = assets.get(new URL(request.url).pathname);
    if (!asset) return undefined;
    const accept = request.headers.get("accept-encoding");
    let encoding = pickEncoding(accept);
    if (encoding === "br" && !asset.variants.br) {
      startBrotli(asset);
      encoding = pickEncoding(accept, false);
    }
    const chosen = asset.variants[encoding] ??
      variant(
        asset,
        encoding,
        encoding === "identity"
          ? asset.source
          : new Uint8Array(gzipSync(asset.source, { level: 9 })),
      );
    const headers = new Headers(asset.headers);
    headers.set("etag", chosen.etag);
    headers.set("vary", "Accept-Encoding");
    if (matches(request.headers.get("if-none-match"), asset)) {
      return new Response(null, { status: 304, headers });
    }
    if (encoding !== "identity") headers.set("content-encoding", encoding);
    headers.set("content-length", String(chosen.body.byteLength));
    return new Response(request.method === "HEAD" ? null : chosen.body, {
      headers,
    });
  };
}

/**
 * br if accepted (and `brotli`), else gzip, else identity. A coding with
 * q=0 is refused; `*` stands for any coding not named.
 */
export function pickEncoding(accept: string | null, brotli = true): Encoding {
  if (!accept) return "identity";
  const q = new Map<string, number>();
  for (const part of accept.split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";");
    let weight = 1;
    for (const p of params) {
      const m = /^\s*q=([\d.]+)\s*$/.exec(p);
      if (m) weight = Number(m[1]);
    }
    if (name) q.set(name, weight);
  }
  const ok = (name: string) => (q.get(name) ?? q.get("*") ?? 0) > 0;
  if (brotli && ok("br")) return "br";
  if (ok("gzip")) return "gzip";
  return "identity";
}

/**
 * True when If-None-Match names any variant of the asset (weak or strong:
 * a proxy may have weakened it) or is `*`.
 */
function matches(header: string | null, asset: StaticAsset): boolean {
  if (header === null) return false;
  const base = asset.etag.slice(0, -1);
  for (let tag of header.split(",")) {
    tag = tag.trim();
    if (tag === "*") return true;
    if (tag.startsWith("W/")) tag = tag.slice(2);
    if (
      tag === asset.etag || tag === `${base}-gzip"` || tag === `${base}-br"`
    ) return true;
  }
  return false;
}
