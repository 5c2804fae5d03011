/**
 * End-to-end tests of `deno task client` and `deno task chat`: the tasks run
 * as subprocesses against the real core server, in-process on 127.0.0.1
 * port 0.
 */
import assert from "node:assert/strict";
import { startCoreServer } from "../server/server.ts";
import { createChatClient } from "../client/rpc.ts";
import { formatError } from "../client/format.ts";
import { parseChatArgs } from "../client/config.ts";
import type { Message } from "../gen/chat_pb.ts";
import { hs256, SECRET, startTlsCore } from "./support/auth.ts";

const root = new URL("..", import.meta.url).pathname;
const has = (hay: string, needle: string) =>
  assert.ok(
    hay.includes(needle),
    `missing ${JSON.stringify(needle)} in:\n${hay}`,
  );

async function task(
  name: string,
  args: string[],
  stdin?: string,
  env: Record<string, string> = {},
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", name, ...args],
    cwd: root,
    env,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** A port nothing listens on: bound, read, released. */
function deadPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** `deno task client` against `addr`, with short waits, and `flags`. */
function quickExamples(addr: string, flags: string[]) {
  return task("client", [
    "--addr",
    addr,
    "--metrics-interval",
    "1",
    "--metrics-count",
    "2",
    "--chat-interval-ms",
    "20",
    "--batch-delay-ms",
    "10",
    "--linger-ms",
    "100",
    ...flags,
  ]);
}

Deno.test("deno task client runs the five examples and reports each ok", async () => {
  const srv = await startCoreServer({ port: 0 });
  try {
    const r = await task("client", [
      "--addr",
      `127.0.0.1:${srv.port}`,
      "--metrics-interval",
      "1",
      "--metrics-count",
      "4",
      "--chat-interval-ms",
      "20",
      "--batch-delay-ms",
      "10",
    ]);
    assert.deepEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ok +SendMessage +id=msg_1\n/);
    assert.match(
      r.stdout,
      /ok +SubscribeMessages +\d+ received \(welcome yes\), 15\/15 posted/,
    );
    assert.match(r.stdout, /ok +UploadMessages +5 sent, server counted 5\n/);
    assert.match(r.stdout, /ok +Chat +10 sent, 10 echoes/);
    assert.match(r.stdout, /ok +StreamMetrics +4\/4 metrics \(.*cpu_usage/);
    for (const name of ["cpu_usage", "memory_usage", "requests_per_second"]) {
      has(r.stdout, `Metric: ${name} = `);
    }
    has(r.stdout, "[general] *System: Welcome to room general, Alice!");
    has(r.stdout, "[Bidirectional] Server: Echo: Bidirectional message #10");
  } finally {
    await srv.shutdown();
  }
});

Deno.test("deno task client exits 1 with UNAVAILABLE for an unreachable server", async () => {
  const r = await task("client", ["--addr", `127.0.0.1:${deadPort()}`]);
  assert.deepEqual(r.code, 1);
  for (
    const rpc of [
      "SendMessage",
      "SubscribeMessages",
      "UploadMessages",
      "Chat",
      "StreamMetrics",
    ]
  ) {
    assert.match(
      r.stdout,
      new RegExp(`FAILED +${rpc} +UNAVAILABLE: No connection established`),
    );
  }
  assert.ok(!/\n\s+at /.test(r.stdout + r.stderr), "no stack trace");
});

Deno.test("deno task client and chat reject a bad flag or value with one line and exit code 2", async () => {
  for (
    const [name, args, message] of [
      [
        "client",
        ["--chat-count", "zero"],
        '--chat-count must be an integer >= 1, got "zero"',
      ],
      ["client", ["--bogus"], "unknown flag --bogus"],
      [
        "client",
        ["--chat-count", "-1"],
        '--chat-count must be an integer >= 1, got "-1"',
      ],
      [
        "client",
        ["--addr", "127.0.0.1:99999"],
        '--addr must be host:port with a port from 1 to 65535, got "127.0.0.1:99999"',
      ],
      [
        "client",
        ["--addr", "127.0.0.1"],
        '--addr must be host:port with a port from 1 to 65535, got "127.0.0.1"',
      ],
      [
        "chat",
        ["--room", "r", "--user", "u", "--addr", "127.0.0.1:99999"],
        '--addr must be host:port with a port from 1 to 65535, got "127.0.0.1:99999"',
      ],
      [
        "chat",
        ["--room", "r", "--user", "u", "--history=-2"],
        '--history must be an integer >= 0, got "-2"',
      ],
      [
        "chat",
        ["--room", "r", "--user", "u", "--history", "many"],
        '--history must be an integer >= 0, got "many"',
      ],
      [
        "chat",
        ["--room", "r", "--user", "u", "--verbose"],
        "unknown flag --verbose",
      ],
      ["chat", ["--room"], "--room needs a value"],
      [
        "chat",
        ["--room", "r", "--user", "u", "--token", "a b"],
        "--token must be one word without spaces",
      ],
      // Deno's node:tls takes no IP address as the server name.
      [
        "client",
        ["--addr", "127.0.0.1:50051", "--tls"],
        'with --tls, --addr must name the host the certificate is for (such as localhost:50051), not an IP address, got "127.0.0.1:50051"',
      ],
      [
        "chat",
        [
          "--room",
          "r",
          "--user",
          "u",
          "--addr",
          "[::1]:50051",
          "--tls-ca",
          "ca.pem",
        ],
        'with --tls, --addr must name the host the certificate is for (such as localhost:50051), not an IP address, got "[::1]:50051"',
      ],
    ] as const
  ) {
    const r = await task(name, [...args]);
    assert.deepEqual(r.code, 2, `${name} ${args.join(" ")}`);
    assert.equal(
      r.stderr,
      `error: ${message} (see deno task ${name} --help)\n`,
    );
    assert.equal(r.stdout, "");
  }
});

Deno.test("deno task client and chat print their usage for --help and exit 0", async () => {
  for (const name of ["client", "chat"]) {
    const r = await task(name, ["--help"]);
    assert.deepEqual(r.code, 0);
    assert.match(r.stdout, new RegExp(`^usage: deno task ${name} `));
    has(r.stdout, "--token T");
    has(r.stdout, "$CHAT_TOKEN");
    if (name === "client") has(r.stdout, "--user NAME");
    assert.equal(r.stderr, "");
  }
});

/** Subscribes in-process and collects what another user posts. */
function watch(port: number, room: string) {
  const client = createChatClient(`127.0.0.1:${port}`);
  const seen: Message[] = [];
  const stream = client.subscribeMessages({ room, user: "Watcher" });
  stream.on("data", (m) => seen.push(m));
  stream.on("error", () => {});
  const ready = new Promise((r) => stream.once("data", r));
  return {
    seen,
    ready,
    close: () =>
      new Promise<void>((r) => {
        stream.on("status", () => (client.close(), r()));
        stream.cancel();
      }),
  };
}

Deno.test("deno task chat sends piped lines, shows the room and leaves on EOF", async () => {
  const srv = await startCoreServer({ port: 0 });
  const w = watch(srv.port, "lobby");
  try {
    await w.ready;
    const r = await task(
      "chat",
      ["--addr", `127.0.0.1:${srv.port}`, "--room", "lobby", "--user", "Dana"],
      "hello there\n\nsecond line",
    );
    assert.deepEqual(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.deepEqual(lines, [
      "[lobby] *System: Welcome to room lobby, Dana!",
      "joined lobby as Dana (Ctrl-D to leave)",
      "[lobby] Dana: hello there",
      "[lobby] Dana: second line",
      "left lobby",
    ]);
    const got = w.seen.filter((m) => m.user === "Dana").map((m) => m.content);
    assert.deepEqual(got, ["hello there", "second line"]);
  } finally {
    await w.close();
    await srv.shutdown();
  }
});

Deno.test("deno task chat --bidi sends over the Chat stream and shows echoes", async () => {
  const srv = await startCoreServer({ port: 0 });
  try {
    const r = await task(
      "chat",
      [
        "--addr",
        `127.0.0.1:${srv.port}`,
        "--room",
        "r2",
        "--user",
        "Eve",
        "--bidi",
      ],
      "ping one\nping two\n",
    );
    assert.deepEqual(r.code, 0, r.stderr);
    has(r.stdout, "[r2] *Server: Echo: ping one\n");
    has(r.stdout, "[r2] *Server: Echo: ping two\n");
    has(r.stdout, "[r2] Eve: ping two\n");
    has(r.stdout, "left r2\n");
  } finally {
    await srv.shutdown();
  }
});

Deno.test("deno task chat prints the status code name and exits 1 when unreachable", async () => {
  const r = await task(
    "chat",
    ["--addr", `127.0.0.1:${deadPort()}`, "--room", "r", "--user", "U"],
    "hi\n",
  );
  assert.deepEqual(r.code, 1);
  assert.match(r.stderr, /^error: UNAVAILABLE: No connection established/m);
  assert.ok(!/\n\s+at /.test(r.stderr), "no stack trace");
});

Deno.test("deno task chat requires --room, and --user without a token", async () => {
  const r = await task("chat", ["--room", "r"]);
  assert.deepEqual(r.code, 2);
  has(r.stderr, "--user is required (or a --token naming one)");
  const noRoom = await task("chat", ["--user", "u"]);
  assert.deepEqual(noRoom.code, 2);
  has(noRoom.stderr, "--room is required");
});

Deno.test("parseChatArgs(): without --user the chat speaks as the token's user; --user wins", async () => {
  const token = await hs256({ sub: "erin" });
  assert.equal(parseChatArgs(["--room", "r", "--token", token]).user, "erin");
  assert.equal(parseChatArgs(["--room", "r"], { token }).user, "erin");
  assert.equal(
    parseChatArgs(["--room", "r", "--token", token, "--user", "frank"]).user,
    "frank",
  );
});

Deno.test("formatError() gives CODE_NAME: details for a server's INVALID_ARGUMENT", async () => {
  const srv = await startCoreServer({ port: 0 });
  const client = createChatClient(`127.0.0.1:${srv.port}`);
  try {
    const err = await client.sendMessage({ user: "", room: "r", content: "x" })
      .then(() => undefined, (e) => e);
    assert.match(formatError(err), /^INVALID_ARGUMENT: .*user/);
  } finally {
    client.close();
    await srv.shutdown();
  }
});

Deno.test("formatError() passes plain errors through without a stack", () => {
  assert.deepEqual(formatError(new Error("boom")), "boom");
  assert.deepEqual(
    formatError({ code: 4, details: "late" }),
    "DEADLINE_EXCEEDED: late",
  );
  assert.deepEqual(formatError("text"), "text");
});

Deno.test("deno task client and chat send --token / CHAT_TOKEN as a bearer token to a core with --jwt-secret", async () => {
  const srv = await startCoreServer({ port: 0, jwtSecret: SECRET });
  const addr = `127.0.0.1:${srv.port}`;
  const chat = (line: string, flags: string[], env: Record<string, string>) =>
    task(
      "chat",
      ["--addr", addr, "--room", "auth", "--user", "Dana", ...flags],
      `${line}\n`,
      env,
    );
  try {
    const dana = await hs256({ sub: "Dana" });
    const flag = await chat("with a flag", ["--token", dana], {});
    assert.equal(flag.code, 0, flag.stderr);
    has(flag.stdout, "[auth] Dana: with a flag\n");
    const env = await chat("from the environment", [], { CHAT_TOKEN: dana });
    assert.equal(env.code, 0, env.stderr);
    has(env.stdout, "[auth] Dana: from the environment\n");
    // Someone else's token: the core refuses to let Dana speak as Eve.
    const eve = await chat("x", [], {
      CHAT_TOKEN: await hs256({ sub: "Eve" }),
    });
    assert.equal(eve.code, 1);
    assert.match(eve.stderr, /^error: PERMISSION_DENIED: /m);
    const none = await chat("x", [], {});
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^error: UNAUTHENTICATED: /m);
    // The examples post as the token's user, so all five pass with it;
    // without a token even StreamMetrics fails.
    const examples = (flags: string[]) => quickExamples(addr, flags);
    const withToken = await examples(["--token", dana]);
    assert.equal(withToken.code, 0, withToken.stdout + withToken.stderr);
    assert.match(withToken.stdout, /ok +SendMessage +id=msg_\d+\n/);
    has(withToken.stdout, "Dana: First batch message");
    const anonymous = await examples([]);
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.stdout, /FAILED +StreamMetrics +UNAUTHENTICATED: /);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("deno task client and chat reach a core over TLS with --tls-ca, and a token goes along", async () => {
  const { core, cert, close } = await startTlsCore({ jwtSecret: SECRET });
  const dir = await Deno.makeTempDir();
  const ca = `${dir}/ca.pem`;
  await Deno.writeTextFile(ca, cert);
  const addr = `localhost:${core.port}`;
  try {
    const dana = await hs256({ sub: "Dana" });
    const examples = await quickExamples(addr, [
      "--tls-ca",
      ca,
      "--token",
      dana,
    ]);
    assert.equal(examples.code, 0, examples.stdout + examples.stderr);
    assert.equal(examples.stdout.match(/^ok /gm)?.length, 5, examples.stdout);
    const chat = await task(
      "chat",
      ["--addr", addr, "--tls-ca", ca, "--room", "tls", "--token", dana],
      "over TLS\n",
    );
    assert.equal(chat.code, 0, chat.stderr);
    has(chat.stdout, "[tls] Dana: over TLS\n");
    // --tls trusts only the system's roots, which do not hold this one.
    const untrusted = await task(
      "chat",
      ["--addr", addr, "--tls", "--room", "tls", "--token", dana],
      "x\n",
    );
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /^error: UNAVAILABLE: /m);
    const missing = await task("client", [
      "--addr",
      addr,
      "--tls-ca",
      `${dir}/none.pem`,
    ]);
    assert.equal(missing.code, 2);
    assert.match(
      missing.stderr,
      /^error: cannot read --tls-ca .*none\.pem: .*\n$/,
    );
  } finally {
    await close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task client --token from deno task token passes every example against a core with auth; --user picks the user", async () => {
  const srv = await startCoreServer({ port: 0, jwtSecret: SECRET });
  const addr = `127.0.0.1:${srv.port}`;
  const run = (flags: string[]) => quickExamples(addr, flags);
  try {
    const made = await task("token", ["--user", "Erin", "--secret", SECRET]);
    assert.equal(made.code, 0, made.stderr);
    const token = made.stdout.trim();
    const r = await run(["--token", token]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (
      const rpc of [
        "SendMessage",
        "SubscribeMessages",
        "UploadMessages",
        "Chat",
        "StreamMetrics",
      ]
    ) {
      assert.match(r.stdout, new RegExp(`ok +${rpc} `));
    }
    has(r.stdout, "[general] Erin: Bidirectional message #1");
    // --user wins over the token's user: the core refuses Frank under Erin's
    // token, which shows --user is what the examples post as.
    const other = await run(["--token", token, "--user", "Frank"]);
    assert.equal(other.code, 1);
    assert.match(
      other.stdout,
      /FAILED +SendMessage +PERMISSION_DENIED: .*"Frank"/,
    );
    assert.match(other.stdout, /FAILED +Chat +PERMISSION_DENIED: /);
    const same = await run(["--token", token, "--user", "Erin"]);
    assert.equal(same.code, 0, same.stdout + same.stderr);
  } finally {
    await srv.shutdown();
  }
});

Deno.test("deno task client --user posts every example as that user without a token", async () => {
  const srv = await startCoreServer({ port: 0 });
  try {
    const r = await task("client", [
      "--addr",
      `127.0.0.1:${srv.port}`,
      "--user",
      "Gus",
      "--metrics-count",
      "1",
      "--metrics-interval",
      "1",
      "--chat-count",
      "1",
      "--chat-interval-ms",
      "10",
      "--batch-delay-ms",
      "1",
      "--linger-ms",
      "100",
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Welcome to room general, Gus!/);
    has(r.stdout, "Gus: First batch message");
    has(r.stdout, "[general] Gus: Bidirectional message #1");
    for (const seed of ["Alice", "Bob", "Charlie"]) {
      assert.ok(!r.stdout.includes(seed), `${seed} in:\n${r.stdout}`);
    }
  } finally {
    await srv.shutdown();
  }
});

Deno.test("createChatClient().close() cancels the streams still open on it: the core drops their subscribers", async () => {
  const core = await startCoreServer({ port: 0, store: "memory" });
  const client = createChatClient(`127.0.0.1:${core.port}`);
  try {
    const ended: number[] = [];
    const streams = [
      client.subscribeMessages({ room: "r", user: "a" }),
      client.subscribeMessages({ room: "r", user: "b" }),
    ];
    for (const s of streams) {
      s.on("error", (e: { code: number }) => ended.push(e.code));
      s.on("data", () => {});
    }
    const chat = client.chat();
    chat.on("error", (e: { code: number }) => ended.push(e.code));
    chat.on("data", () => {});
    chat.write({ user: "c", room: "r", content: "hi" });
    const until = Date.now() + 5000;
    while (core.snapshot().subscribers < 2 || core.snapshot().openCalls < 3) {
      assert.ok(Date.now() < until, "the calls never opened");
      await new Promise((r) => setTimeout(r, 10));
    }
    client.close();
    while (core.snapshot().subscribers > 0 || core.snapshot().openCalls > 0) {
      assert.ok(
        Date.now() < until + 5000,
        `left open: ${JSON.stringify(core.snapshot())}`,
      );
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(ended, [1, 1, 1]); // CANCELLED
  } finally {
    client.close();
    await core.shutdown(500);
  }
});
