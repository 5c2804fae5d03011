/**
 * `deno task setup` (run first by `deno task test`): installs the system
 * packages the test suite drives, where this machine allows it.
 *
 * The browser tests need Debian's Chromium, curl tests need curl, the
 * core's HTTP/2 interop test needs h2load (nghttp2-client), the edge's
 * native gRPC test Python grpcio (python3-grpcio, run with /usr/bin/python3),
 * the broker and scale-out tests redis-server (each test starts its own). As root
 * on Debian this installs what is missing with apt-get; elsewhere it says
 * what to install and leaves the tests to fail with that message.
 */
const NEEDED: { bin: string; pkg: string; why: string }[] = [
  {
    bin: "/usr/bin/chromium",
    pkg: "chromium",
    why: "browser end-to-end tests",
  },
  { bin: "/usr/bin/curl", pkg: "curl", why: "curl client tests" },
  {
    bin: "/usr/bin/h2load",
    pkg: "nghttp2-client",
    why: "HTTP/2 interop tests of the core with nghttp2's h2load",
  },
  {
    bin: "/usr/lib/python3/dist-packages/grpc/__init__.py",
    pkg: "python3-grpcio",
    why: "the edge's answer to a native gRPC client, seen by Python grpcio",
  },
  {
    bin: "/usr/bin/tmux",
    pkg: "tmux",
    why: "the chat CLI at a real terminal (prompt line, colours)",
  },
  {
    bin: "/usr/bin/redis-server",
    pkg: "redis-server",
    why: "Redis broker and scale-out tests (several cores sharing rooms)",
  },
];

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[]): Promise<boolean> {
  const { success } = await new Deno.Command(cmd, {
    args,
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return success;
}

const missing = [];
for (const n of NEEDED) if (!(await exists(n.bin))) missing.push(n);
if (missing.length > 0) {
  const pkgs = missing.map((m) => m.pkg);
  const isRoot = Deno.uid?.() === 0;
  if (isRoot && await exists("/usr/bin/apt-get")) {
    console.log(
      `setup: installing ${pkgs.join(", ")} (${
        missing.map((m) => m.why).join("; ")
      })`,
    );
    const ok = await run("apt-get", ["update", "-qq"]) &&
      await run("apt-get", [
        "install",
        "-y",
        "-qq",
        ...pkgs,
      ]);
    if (!ok) {
      console.error(
        `setup: apt-get failed; the tests that need ${
          pkgs.join(", ")
        } will fail`,
      );
    }
  } else {
    console.error(
      `setup: missing ${
        pkgs.join(", ")
      }; install them (e.g. sudo apt-get install -y ${pkgs.join(" ")}) ` +
        "or the tests that need them will fail",
    );
  }
}
