import assert from "node:assert/strict";
import { createStaticHandler, pickEncoding } from "./static.ts";

Deno.test("pickEncoding() prefers br, then gzip, honours q=0 and *", () => {
  assert.equal(pickEncoding(null), "identity");
  assert.equal(pickEncoding(""), "identity");
  assert.equal(pickEncoding("gzip, deflate, br"), "br");
  assert.equal(pickEncoding("gzip"), "gzip");
  assert.equal(pickEncoding("br;q=0, gzip;q=0.5"), "gzip");
  assert.equal(pickEncoding("gzip;q=0"), "identity");
  assert.equal(pickEncoding("*"), "br");
  assert.equal(pickEncoding("*, br;q=0"), "gzip");
  assert.equal(pickEncoding("deflate"), "identity");
  assert.equal(pickEncoding("gzip, br", false), "gzip");
  assert.equal(pickEncoding("br", false), "identity");
});

Deno.test("createStaticHandler() answers HEAD with the headers only and ignores other paths", async () => {
  const serve = createStaticHandler();
  assert.equal(serve(new Request("http://edge/nope")), undefined);
  assert.equal(
    serve(new Request("http://edge/", { method: "POST" })),
    undefined,
  );
  const head = serve(
    new Request("http://edge/app.css", {
      method: "HEAD",
      headers: { "accept-encoding": "gzip" },
    }),
  )!;
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  assert.equal(head.headers.get("content-encoding"), "gzip");
  assert.match(head.headers.get("etag")!, /-gzip"$/);
  assert.equal(head.headers.get("x-content-type-options"), "nosniff");
  const get = serve(
    new Request("http://edge/app.css", {
      headers: { "accept-encoding": "gzip" },
    }),
  )!;
  const body = new Uint8Array(await get.arrayBuffer());
  assert.equal(String(body.byteLength), head.headers.get("content-length"));
});

Deno.test("createStaticHandler() serves what else is accepted until brotli is ready", async () => {
  const serve = createStaticHandler();
  const get = () =>
    serve(
      new Request("http://edge/favicon.svg", {
        headers: { "accept-encoding": "br" },
      }),
    )!;
  const first = get();
  await first.body?.cancel();
  assert.equal(first.headers.get("content-encoding"), null, "identity first");
  let later = get();
  for (let i = 0; i < 100 && !later.headers.get("content-encoding"); i++) {
    await later.body?.cancel();
    await new Promise((r) => setTimeout(r, 10));
    later = get();
  }
  assert.equal(later.headers.get("content-encoding"), "br");
  assert.match(later.headers.get("etag")!, /-br"$/);
  await later.body?.cancel();
});
