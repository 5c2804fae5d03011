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
