/**
 * The embedded page: `gen/web_assets.ts` matches a fresh build of `web/`, and
 * edge/assets.ts serves it well.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ASSETS, serveAsset } from "../edge/assets.ts";
import { renderAssetsModule } from "../web/build.ts";

Deno.test("gen/web_assets.ts is what `deno task build:web` makes from web/ now", async () => {
  const fresh = await renderAssetsModule();
  const committed = await Deno.readTextFile(
    new URL("../gen/web_assets.ts", import.meta.url),
  );
  assert.ok(
    fresh === committed,
    "gen/web_assets.ts is stale: run `deno task build:web` and commit it",
  );
});

Deno.test("serveAsset() serves the page, script and style with their types and security headers", async () => {
  const page = serveAsset(new Request("http://edge.test/"))!;
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(
    page.headers.get("content-security-policy")!,
    /default-src 'self'/,
  );
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  const html = await page.text();
  assert.match(html, /<script type="module" src="\/app.js"><\/script>/);
  assert.match(html, /id="metrics-chart"/);

  const script = serveAsset(new Request("http://edge.test/app.js"))!;
  assert.equal(
    script.headers.get("content-type"),
    "text/javascript; charset=utf-8",
  );
  assert.match(await script.text(), /chat\.ChatService/);
  const style = serveAsset(new Request("http://edge.test/app.css"))!;
  assert.equal(style.headers.get("content-type"), "text/css; charset=utf-8");
  await style.body?.cancel();
});

Deno.test("serveAsset() answers 304 to a matching ETag and ignores other paths and methods", () => {
  const etag = ASSETS["/app.js"].etag;
  const cached = serveAsset(
    new Request("http://edge.test/app.js", {
      headers: { "if-none-match": etag },
    }),
  )!;
  assert.equal(cached.status, 304);
  assert.equal(cached.body, null);
  const head = serveAsset(
    new Request("http://edge.test/", { method: "HEAD" }),
  )!;
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  assert.equal(serveAsset(new Request("http://edge.test/nope")), undefined);
  assert.equal(
    serveAsset(new Request("http://edge.test/", { method: "POST", body: "x" })),
    undefined,
  );
});
