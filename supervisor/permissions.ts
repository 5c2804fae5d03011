/**
 * The permissions the supervisor gives the core: the network, the
 * environment, `sys=uid`, and reading only the files the core reads.
 *
 * What the core reads: its TLS certificate and key and its JWT public key
 * (paths from its config), the history store's data directory (which it
 * also writes; the SQLite store also its worker module), and the `.proto` files `grpc-health-check` and
 * `@grpc/reflection` load from `node_modules` at start-up (through
 * `fs.accessSync`, which Deno checks against `sys=uid`). Modules themselves
 * load without a read permission. Paths are given as configured: the core
 * runs in the project root, where Deno resolves a relative one exactly as
 * the core's own reads do.
 *
 * @module
 */
import type { CoreConfig } from "../server/config.ts";

/** Files and folders the core reads, for `--allow-read=`. */
export function coreReadPaths(config: Readonly<CoreConfig>): string[] {
  return [
    "node_modules",
    config.tlsCert,
    config.tlsKey,
    config.jwtPublicKey,
    // A durable history store's data directory; the SQLite store's worker
    // module too (a Worker's module needs a read permission, unlike imports).
    ...(config.store === "sqlite" ? ["server"] : []),
    ...(config.store === "memory" ? [] : [config.dataDir]),
  ].filter((p) => p !== "");
}

/**
 * The `deno run` permission flags of the core; without a config (a child
 * other than the core, such as a test's stand-in), or with a path that has
 * a comma, reading is not scoped.
 */
export function corePermissions(config?: Readonly<CoreConfig>): string[] {
  const paths = config === undefined ? undefined : coreReadPaths(config);
  // The flag's list is comma-separated: a path with a comma cannot be in it.
  const read = paths === undefined || paths.some((p) => p.includes(","))
    ? "--allow-read"
    : `--allow-read=${paths.join(",")}`;
  // A durable history store writes in its data directory, nowhere else.
  const write = config !== undefined && config.store !== "memory"
    ? [
      config.dataDir.includes(",")
        ? "--allow-write"
        : `--allow-write=${config.dataDir}`,
    ]
    : [];
  return ["--allow-net", "--allow-env", read, "--allow-sys=uid", ...write];
}
