/**
 * Auth from the command line: the core's start-up line says whether tokens
 * are required (once), and `deno task token` signs tokens that core accepts.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { chatServiceDefinition } from "../rpc/chat_service.ts";
import { spawnWatched } from "./fixtures/goaway_process.ts";
import { createChatClient } from "../client/rpc.ts";
import { bearer, es256Keys, SECRET, testCertificate } from "./support/auth.ts";
import { rejection } from "./support/core.ts";

const MAIN = new URL("../server/main.ts", import.meta.url).pathname;
const TOKEN = new URL("../tools/token/main.ts", import.meta.url).pathname;

async function token(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-env", TOKEN, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout).trim(),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Starts server/main.ts; resolves with its port and output so far. */
async function startMain(env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "--port", "0"],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/listening on 127\.0\.0\.1:(\d+)/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`core exited: ${seen}`);
    seen += value;
  }
  const port = Number(seen.match(/listening on 127\.0\.0\.1:(\d+)/)![1]);
  return {
    port,
    seen,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

Deno.test("deno task token signs the claims asked for; the core started with CHAT_JWT_SECRET accepts it", async () => {
  const core = await startMain({ CHAT_JWT_SECRET: SECRET });
  const clients = [];
  try {
    assert.equal(core.seen.match(/auth: /g)?.length, 1, core.seen);
    assert.match(
      core.seen,
      /auth: JWT bearer tokens required \(HS256 secret\)/,
    );
    const made = await token(
      [
        "--user",
        "dana",
        "--rooms",
        "lobby,team-*",
        "--scope",
        "publish",
        "--ttl",
        "90",
      ],
      { CHAT_JWT_SECRET: SECRET },
    );
    assert.equal(made.code, 0, made.stderr);
    const claims = JSON.parse(atob(made.stdout.split(".")[1]));
    assert.equal(claims.sub, "dana");
    assert.deepEqual(claims.rooms, ["lobby", "team-*"]);
    assert.equal(claims.scope, "publish");
    assert.equal(claims.exp - claims.iat, 90);
    const dana = createChatClient(
      `127.0.0.1:${core.port}`,
      bearer(made.stdout),
    );
    const anonymous = createChatClient(`127.0.0.1:${core.port}`, {
      "test.c": 2,
    });
    clients.push(dana, anonymous);
    await dana.sendMessage({ user: "", room: "team-x", content: "hi" });
    const denied = await rejection(
      dana.sendMessage({ user: "", room: "other", content: "hi" }),
    );
    assert.equal(denied.code, status.PERMISSION_DENIED);
    const unauth = await rejection(
      anonymous.sendMessage({ user: "dana", room: "team-x", content: "hi" }),
    );
    assert.equal(unauth.code, status.UNAUTHENTICATED);
  } finally {
    for (const c of clients) c.close();
    await core.stop();
  }
});

Deno.test("server/main.ts without a key says once that it runs open", async () => {
  const core = await startMain({});
  try {
    assert.equal(core.seen.match(/auth: /g)?.length, 1, core.seen);
    assert.match(core.seen, /auth: off, anyone who reaches this port/);
  } finally {
    await core.stop();
  }
});

Deno.test("deno task token refuses a missing user, secret or a bad ttl with exit code 2", async () => {
  const noUser = await token([], { CHAT_JWT_SECRET: SECRET });
  assert.equal(noUser.code, 2);
  assert.match(noUser.stderr, /--user is required/);
  const noSecret = await token(["--user", "a"]);
  assert.equal(noSecret.code, 2);
  assert.match(noSecret.stderr, /no secret/);
  const badTtl = await token(["--user", "a", "--ttl", "soon"], {
    CHAT_JWT_SECRET: SECRET,
  });
  assert.equal(badTtl.code, 2);
  assert.match(badTtl.stderr, /--ttl must be more than 0, like 90, 30m/);
});

Deno.test("deno task token refuses what no core accepts (a short secret, a ttl of 0 or less, a blank, long or server user, a bad room pattern) in one line with exit code 2", async () => {
  const see = " (see deno task token --help)\n";
  for (
    const [args, env, message] of [
      [
        ["--user", "a", "--secret", "short"],
        {},
        "--secret must be at least 32 bytes",
      ],
      [
        ["--user", "a"],
        { CHAT_JWT_SECRET: "short" },
        "CHAT_JWT_SECRET must be at least 32 bytes",
      ],
      [
        ["--user", "a", "--ttl", "0"],
        { CHAT_JWT_SECRET: SECRET },
        '--ttl must be more than 0, like 90, 30m, 1h or 7d, got "0"',
      ],
      [
        ["--user", "a", "--ttl", "0h"],
        { CHAT_JWT_SECRET: SECRET },
        '--ttl must be more than 0, like 90, 30m, 1h or 7d, got "0h"',
      ],
      [
        ["--user", "a", "--ttl", "-1"],
        { CHAT_JWT_SECRET: SECRET },
        '--ttl must be more than 0, like 90, 30m, 1h or 7d, got "-1"',
      ],
      [
        ["--user", "a", "--ttl=-1"],
        { CHAT_JWT_SECRET: SECRET },
        '--ttl must be more than 0, like 90, 30m, 1h or 7d, got "-1"',
      ],
      [["--bogus"], {}, "Unknown option '--bogus'"],
      [["--user", "  "], { CHAT_JWT_SECRET: SECRET }, "--user is required"],
      [
        ["--user", "u".repeat(257)],
        { CHAT_JWT_SECRET: SECRET },
        "--user must be at most 256 characters",
      ],
      [
        ["--user", "System"],
        { CHAT_JWT_SECRET: SECRET },
        '--user "System" is reserved for the server\'s own lines',
      ],
      [
        ["--user", "server "],
        { CHAT_JWT_SECRET: SECRET },
        '--user "server " is reserved for the server\'s own lines',
      ],
      [
        ["--user", "a", "--rooms", ""],
        { CHAT_JWT_SECRET: SECRET },
        "--rooms must name a room or a prefix* pattern (omit it for every room)",
      ],
      [
        ["--user", "a", "--rooms", "lobby,a*b"],
        { CHAT_JWT_SECRET: SECRET },
        '--rooms: room pattern "a*b" has a "*" that is not at its end',
      ],
    ] as const
  ) {
    const r = await token([...args], env);
    assert.equal(r.code, 2, `${args}`);
    assert.equal(r.stderr, `token: ${message}${see}`);
    assert.equal(r.stdout, "");
  }
});

Deno.test("deno task token --help prints its usage and exits 0", async () => {
  for (const flag of ["--help", "-h"]) {
    const r = await token([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage: deno task token --user U /);
    for (const f of ["--user", "--rooms", "--scope", "--ttl", "--secret"]) {
      assert.match(r.stdout, new RegExp(`^  ${f} `, "m"));
    }
    assert.equal(r.stderr, "");
  }
});

/** The supervised core with `args`; `check` runs while it serves. */
async function supervisedCore(
  args: string[],
  check: (sup: ReturnType<typeof spawnWatched>, corePid: number) => Promise<
    void
  >,
): Promise<void> {
  await using sup = spawnWatched([
    "run",
    "--allow-run",
    "--allow-env",
    "supervisor/main.ts",
    ...args,
  ]);
  const corePid = Number(
    /started child pid (\d+)/.exec(
      await sup.waitLine(/started child pid/, 30_000),
    )![1],
  );
  try {
    await check(sup, corePid);
  } catch (err) {
    // The supervisor is killed on the way out, not its core (its own
    // process group), which would hold the output pipes open.
    try {
      Deno.kill(corePid, "SIGKILL");
    } catch { /* gone already */ }
    throw err;
  }
}

Deno.test("serve:core: the supervised core may read node_modules and its key files only, and starts with TLS and a public key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { certFile, keyFile, cert } = await testCertificate(dir);
    const { publicKeyFile, sign } = await es256Keys(dir);
    await supervisedCore([
      "--port",
      "0",
      "--tls-cert",
      certFile,
      "--tls-key",
      keyFile,
      "--jwt-public-key",
      publicKeyFile,
    ], async (sup, corePid) => {
      const listening = await sup.waitLine(
        /listening on 127\.0\.0\.1:\d+/,
        30_000,
      );
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(listening)![1]);
      const argv = (await Deno.readTextFile(`/proc/${corePid}/cmdline`))
        .split("\0");
      assert.ok(
        argv.includes(
          // data: the history store's directory.
          `--allow-read=node_modules,${certFile},${keyFile},${publicKeyFile},data`,
        ),
        argv.join(" "),
      );
      assert.ok(argv.includes("--allow-write=data"), argv.join(" "));
      assert.ok(!argv.includes("--allow-read"), argv.join(" "));
      // It serves: TLS with its certificate, tokens checked with its key.
      const client = new grpc.Client(
        `localhost:${port}`,
        grpc.credentials.createSsl(Buffer.from(cert)),
      );
      try {
        const metadata = new grpc.Metadata();
        metadata.set(
          "authorization",
          `Bearer ${await sign({ sub: "alice" })}`,
        );
        const send = chatServiceDefinition.SendMessage;
        const err = await new Promise<grpc.ServiceError | null>((resolve) =>
          client.makeUnaryRequest(
            send.path,
            send.requestSerialize,
            send.responseDeserialize,
            { user: "", room: "lobby", content: "hi" },
            metadata,
            { deadline: new Date(Date.now() + 5000) },
            (e) => resolve(e),
          )
        );
        assert.equal(err, null);
      } finally {
        client.close();
      }
      sup.proc.kill("SIGTERM");
      assert.equal((await sup.status).code, 0, sup.lines.join("\n"));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
