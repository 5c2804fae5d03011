import assert from "node:assert/strict";
import { parseCoreConfig } from "../server/config.ts";
import { corePermissions } from "./permissions.ts";

Deno.test("corePermissions() lets the core read node_modules and its configured files only, and write its data directory", () => {
  assert.deepEqual(corePermissions(parseCoreConfig([], {})), [
    "--allow-net",
    "--allow-env",
    "--allow-read=node_modules,data",
    "--allow-sys=uid",
    "--allow-write=data",
  ]);
  assert.deepEqual(
    corePermissions(parseCoreConfig(["--store", "sqlite"], {})).slice(2),
    [
      "--allow-read=node_modules,server,data",
      "--allow-sys=uid",
      "--allow-write=data",
    ],
  );
  assert.deepEqual(
    corePermissions(parseCoreConfig(["--store", "memory"], {})),
    [
      "--allow-net",
      "--allow-env",
      "--allow-read=node_modules",
      "--allow-sys=uid",
    ],
  );
  const config = parseCoreConfig([
    "--store",
    "memory",
    "--tls-cert",
    "/etc/chat/cert.pem",
    "--tls-key",
    "/etc/chat/key.pem",
    "--jwt-public-key",
    "keys/issuer.pub.pem",
  ], {});
  assert.equal(
    corePermissions(config)[2],
    "--allow-read=node_modules,/etc/chat/cert.pem,/etc/chat/key.pem,keys/issuer.pub.pem",
  );
  // Another child (a test's stand-in) keeps an unscoped read, and so does
  // a path the comma-separated list cannot hold.
  assert.equal(corePermissions()[2], "--allow-read");
  assert.equal(
    corePermissions(parseCoreConfig(["--jwt-public-key", "a,b.pem"], {}))[2],
    "--allow-read",
  );
});
