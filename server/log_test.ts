import assert from "node:assert/strict";
import { Metadata, setLogger } from "@grpc/grpc-js";
import { grpcJsLogger, type Logger } from "./log.ts";

Deno.test("grpcJsLogger() never logs the value of an authorization header grpc-js could not take as metadata", () => {
  const lines: string[] = [];
  const keep = (line: string) => void lines.push(line);
  const log: Logger = {
    error: keep,
    warn: keep,
    info: keep,
    notice: keep,
    debug: keep,
  };
  const logger = grpcJsLogger(log);
  setLogger(logger);
  try {
    // A tab after the scheme (valid HTTP/2, not valid gRPC metadata): grpc-js
    // logs the whole value, twice, and the token in it is a good one.
    const token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
    Metadata.fromHttp2Headers({ authorization: `Bearer\t${token}` });
    // A repeated header reaches grpc-js as a list.
    Metadata.fromHttp2Headers(
      {
        authorization: [`Bearer ${token}\u00e9`, "Bearer other.to.ken"],
      } as unknown as Parameters<typeof Metadata.fromHttp2Headers>[0],
    );
    Metadata.fromHttp2Headers({ "x-a": "caf\u00e9" });
    assert.equal(lines.length, 3, lines.join("\n"));
    for (const line of lines.slice(0, 2)) {
      assert.match(line, /metadata entry authorization: .*not logged/);
      assert.doesNotMatch(line, /eyJ|other\.to\.ken/, line);
    }
    // Other headers are still logged as they came.
    assert.match(lines[2], /x-a: caf\u00e9/);
  } finally {
    logger.close();
    setLogger(console);
  }
});
