import assert from "node:assert/strict";
import { negotiateGrpcWeb } from "./compression.ts";

Deno.test("negotiateGrpcWeb() picks gzip from grpc-encoding and grpc-accept-encoding", () => {
  const none = negotiateGrpcWeb(null, null);
  assert.equal(none.request, undefined);
  assert.equal(none.response, undefined);
  assert.equal(negotiateGrpcWeb("identity", null).request, undefined);
  assert.equal(negotiateGrpcWeb("gzip", null).request?.name, "gzip");
  assert.equal(negotiateGrpcWeb("gzip", null).response, undefined);
  assert.equal(
    negotiateGrpcWeb(null, "identity, deflate,gzip").response?.name,
    "gzip",
  );
  assert.equal(negotiateGrpcWeb(null, "deflate").response, undefined);
  const bad = negotiateGrpcWeb("snappy", "gzip");
  assert.equal(bad.unsupported, "snappy");
  assert.equal(bad.request, undefined);
});
