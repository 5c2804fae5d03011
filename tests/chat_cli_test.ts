/**
 * `deno task chat` as a process against a real core: history on join (also
 * with nothing on stdin), resume across a core restart with no gap and no
 * duplicate, lines typed while the core is down, a line whose answer was
 * lost sent again once (its idempotency key), and (in tmux, a real
 * terminal) the prompt line kept intact, colours and `NO_COLOR`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createChatClient } from "../client/rpc.ts";
import {
  type CoreServer,
  startCoreServer,
  type StartOptions,
} from "../server/server.ts";
import { Access } from "../server/auth/access.ts";
import { ChatError } from "../server/rooms/errors.ts";
import { createAuthenticator } from "../server/auth/authenticator.ts";
import { createTokenVerifier } from "../server/auth/token_verifier.ts";
import { hs256, SECRET } from "./support/auth.ts";
import { spawnChat } from "./support/chat_process.ts";
import { answerCuttingProxy } from "./fixtures/answer_cutting_proxy.ts";
import { roomContents } from "./support/core.ts";

const count = (hay: string, needle: string) => hay.split(needle).length - 1;

/**
 * Posts each of `contents` to `room` as Poster, with `token` if any. A client
 * of its own, closed after: Deno's node:http2 client can crash the process
 * when an idle connection gets the GOAWAY of a core that stops (nghttp2
 * find_stream_on_goaway_func assertion), so none is left open across a stop.
 */
async function postTo(
  addr: string,
  room: string,
  contents: string[],
  token = "",
): Promise<void> {
  const poster = createChatClient(addr, {
    "grpc.use_local_subchannel_pool": 1,
  }, token);
  try {
    for (const content of contents) {
      await poster.sendMessage({ user: "Poster", room, content });
    }
  } finally {
    poster.close();
  }
}

/**
 * A core that can be stopped and started on its port, with a durable store
 * (or, with `memory`, one that forgets every room when it stops).
 */
async function durableCore(store: "sqlite" | "memory" = "sqlite") {
  const dataDir = await Deno.makeTempDir({ prefix: "chat-cli-" });
  const options: StartOptions = { port: 0, store, dataDir };
  let core: CoreServer | undefined = await startCoreServer(options);
  const port = core.port;
  const addr = `127.0.0.1:${port}`;
  return {
    addr,
    /** Posts `content` to `room` as Poster. */
    post: (room: string, content: string) => postTo(addr, room, [content]),
    async stop() {
      await core?.shutdown(100);
      core = undefined;
    },
    async start() {
      core = await startCoreServer({ ...options, port });
    },
    async close() {
      await core?.shutdown(100);
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

/** `deno task chat` in `room` as `user` against `addr`, plus `flags`. */
const chatIn = (addr: string, room: string, user: string, ...flags: string[]) =>
  spawnChat(["--addr", addr, "--room", room, "--user", user, ...flags]);

Deno.test("deno task chat shows history on join and resumes across a core restart with no gap and no duplicate", async () => {
  const core = await durableCore();
  const post = (content: string) => core.post("lobby", content);
  try {
    for (let i = 1; i <= 4; i++) await post(`before ${i}`);
    const chat = chatIn(core.addr, "lobby", "Dana", "--history", "3");
    await chat.waitFor("joined lobby as Dana");
    await chat.waitFor("Poster: before 4");
    await post("live 1");
    await chat.waitFor("Poster: live 1");

    await core.stop();
    await chat.waitFor(/-- connection lost \(.*\); reconnecting in/);
    // Typed while the core is down: reported, then sent once it is back.
    await chat.type("typed while down");
    await core.start();
    for (let i = 1; i <= 3; i++) await post(`missed ${i}`);
    await chat.waitFor(
      /-- reconnected to lobby: \d missed message\(s\) follow/,
    );
    await chat.waitFor("Dana: typed while down");
    await post("live 2");
    await chat.waitFor("Poster: live 2");
    const r = await chat.finish();

    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /not sent yet: "typed while down" \(UNAVAILABLE: .*\); will retry/,
    );
    assert.equal(count(r.stdout, "Poster: before 1"), 0, "history is 3");
    for (
      const line of [
        "before 2",
        "before 3",
        "before 4",
        "live 1",
        "missed 1",
        "missed 2",
        "missed 3",
        "live 2",
      ]
    ) {
      assert.equal(count(r.stdout, `[lobby] Poster: ${line}\n`), 1, line);
    }
    assert.equal(count(r.stdout, "[lobby] Dana: typed while down\n"), 1);
    // In order: the replay comes before what was posted after it.
    const at = (s: string) => r.stdout.indexOf(s);
    assert.ok(at("before 4") < at("live 1"));
    assert.ok(at("live 1") < at("missed 1"));
    assert.ok(at("missed 3") < at("live 2"));
    assert.ok(!r.stdout.includes("missing here"), r.stdout);
  } finally {
    await core.close();
  }
});

Deno.test("deno task chat after a core restart that lost the room's history (a new epoch) says so and shows what the new history holds, once", async () => {
  const core = await durableCore("memory");
  const post = (content: string) => core.post("lobby", content);
  try {
    await post("before");
    const chat = chatIn(core.addr, "lobby", "Dana", "--history", "10");
    await chat.waitFor("Poster: before");
    await core.stop();
    // The third failed attempt: the next is 2 s away, time enough to post.
    await chat.waitFor(/-- connection lost .*; reconnecting in 2\.0 s/);
    await core.start();
    // Posted to the new epoch before the chat is back: the server sends a
    // resume in an old epoch nothing of the new one, so the chat asks.
    for (let i = 1; i <= 3; i++) await post(`new ${i}`);
    await chat.waitFor(
      "-- reconnected to lobby: the room's history started over on the server (messages sent meanwhile may be missing); up to 3 recent message(s) follow",
    );
    await chat.waitFor("Poster: new 3");
    await post("live");
    await chat.waitFor("Poster: live");
    const r = await chat.finish();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const line of ["before", "new 1", "new 2", "new 3", "live"]) {
      assert.equal(count(r.stdout, `[lobby] Poster: ${line}\n`), 1, line);
    }
    const at = (s: string) => r.stdout.indexOf(s);
    assert.ok(at("new 1") < at("new 2") && at("new 3") < at("Poster: live"));
    assert.ok(!r.stdout.includes("missing here"), r.stdout);
  } finally {
    await core.close();
  }
});

/**
 * A core with auth on whose token check of one user's calls can be held:
 * `hold(n)` holds that user's n-th call from now (the chat makes no call but
 * its subscriptions) until it is released or failed (UNAVAILABLE).
 */
async function coreHoldingCalls(user: string, options: StartOptions) {
  const verify = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  const check = createAuthenticator({ verify, leewaySeconds: 0 });
  const token = await hs256({ sub: user });
  let calls = 0;
  const holds = new Map<number, { came(): void; until: Promise<void> }>();
  const access = new Access({
    authenticate: (authorization) => {
      if (authorization !== `Bearer ${token}`) return check(authorization);
      const held = holds.get(++calls);
      if (held === undefined) return check(authorization);
      held.came();
      return held.until.then(() => check(authorization));
    },
  });
  let core: CoreServer | undefined = await startCoreServer({
    ...options,
    port: 0,
    access,
  });
  const port = core.port;
  const addr = `127.0.0.1:${port}`;
  return {
    addr,
    token,
    /** Holds the n-th call from now; `came` resolves once it did. */
    hold(n: number) {
      let came!: () => void;
      let release!: () => void;
      let fail!: (err: Error) => void;
      const reached = new Promise<void>((r) => came = r);
      const until = new Promise<void>((resolve, reject) => {
        release = resolve;
        fail = reject;
      });
      holds.set(calls + n, { came, until });
      return {
        came: reached,
        release: () => release(),
        fail: () => fail(new ChatError("unavailable", "check held, failed")),
      };
    },
    post: async (...contents: string[]) =>
      postTo(addr, "lobby", contents, await hs256({ sub: "Poster" })),
    async stop() {
      await core?.shutdown(100);
      core = undefined;
    },
    async start() {
      core = await startCoreServer({ ...options, port, access });
    },
  };
}

Deno.test("deno task chat reports a new epoch found while it fetches a new epoch's history, and the resume after that fetch was cut off", async () => {
  // Memory: a restart starts the room over; so does 3 s of silence (the
  // TTL) while the core runs.
  const core = await coreHoldingCalls("Dana", {
    store: "memory",
    historyTtlMs: 3_000,
  });
  const startedOver = "the room's history started over on the server";
  try {
    await core.post("epoch 1");
    const chat = spawnChat([
      ...["--addr", core.addr, "--room", "lobby", "--user", "Dana"],
      ...["--history", "10"],
    ], { CHAT_TOKEN: core.token });
    await chat.waitFor("Poster: epoch 1");
    await core.stop();
    await chat.waitFor(/-- connection lost .*; reconnecting in 2\.0 s/);
    await core.start();
    await core.post("epoch 2");
    // Its next call resumes (a new epoch); the one after it asks for what
    // the new epoch holds: held until that history is lost too (the TTL).
    const fetch2 = core.hold(2);
    await fetch2.came;
    await chat.waitFor(startedOver);
    await new Promise((r) => setTimeout(r, 4_500));
    await core.post("epoch 3");
    // The next call asks for what the third epoch holds: it fails.
    const fetch3 = core.hold(1);
    fetch2.release();
    // The fetch found a third epoch: said, not left silent.
    await chat.waitFor(/started over[^]*started over/, "a second notice");
    await fetch3.came;
    fetch3.fail();
    await chat.waitFor("Poster: epoch 3");
    const r = await chat.finish();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(count(r.stdout, startedOver), 2, r.stdout);
    // The fetch cut off is a lost connection: said, and so is the resume.
    assert.match(
      r.stdout,
      /-- connection lost \(UNAVAILABLE: check held, failed\)[^\n]*\n-- reconnected to lobby: 1 missed message\(s\) follow\n\[lobby\] Poster: epoch 3\n/,
    );
    for (const line of ["epoch 1", "epoch 3"]) {
      assert.equal(count(r.stdout, `[lobby] Poster: ${line}\n`), 1, line);
    }
  } finally {
    await core.stop();
  }
});

Deno.test("deno task chat with nothing on stdin shows all the history it asked for before it leaves", async () => {
  const core = await startCoreServer({ port: 0 });
  const addr = `127.0.0.1:${core.port}`;
  const poster = createChatClient(addr);
  try {
    for (let i = 1; i <= 300; i++) {
      await poster.sendMessage({ user: "P", room: "dump", content: `m${i}` });
    }
    // Input ends at once, as with `printf '' | deno task chat ...`.
    const r = await chatIn(addr, "dump", "Lee", "--history", "300").finish();
    assert.equal(r.code, 0, r.stderr);
    for (let i = 1; i <= 300; i++) {
      assert.equal(count(r.stdout, `[dump] P: m${i}\n`), 1, `m${i}`);
    }
    assert.ok(r.stdout.trimEnd().endsWith("left dump"), r.stdout);
  } finally {
    poster.close();
    await core.shutdown(100);
  }
});

Deno.test("deno task chat reports a line it could not send before leaving, and exits 1", async () => {
  const core = await startCoreServer({ port: 0 });
  const chat = chatIn(
    `127.0.0.1:${core.port}`,
    "r3",
    "Kim",
    "--flush-ms",
    "300",
  );
  try {
    await chat.waitFor("joined r3 as Kim");
    await core.shutdown(100);
    await chat.waitFor("-- connection lost");
    await chat.type("never delivered");
    const r = await chat.finish();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not sent yet: "never delivered"/);
    assert.match(r.stderr, /^not sent: "never delivered"$/m);
    assert.match(r.stdout, /left r3\n$/);
  } finally {
    await chat.finish();
    await core.shutdown(0);
  }
});

/** A chat CLI in a tmux pane: a real terminal, so the prompt line is live. */
async function tmuxChat(socket: string, addr: string, env: string) {
  const tmux = async (...args: string[]) => {
    const out = await new Deno.Command("tmux", {
      args: ["-L", socket, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        `tmux ${args[0]}: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return new TextDecoder().decode(out.stdout);
  };
  const root = new URL("..", import.meta.url).pathname;
  await tmux(
    "new-session",
    "-d",
    "-x",
    "100",
    "-y",
    "20",
    `cd ${root} && ${env} ${Deno.execPath()} task -q chat --addr ${addr} --room tty --user Dana`,
  );
  const screen = (escapes = false) =>
    tmux("capture-pane", "-p", ...(escapes ? ["-e"] : []));
  return {
    tmux,
    screen,
    async waitFor(text: string) {
      const until = Date.now() + 15_000;
      while (!(await screen()).includes(text)) {
        if (Date.now() > until) {
          throw new Error(`timed out waiting for ${text}:\n${await screen()}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () => tmux("kill-server").catch(() => ""),
  };
}

/** A core, a second client, and the chat in tmux with `env`; all closed after `body`. */
async function atTerminal(
  name: string,
  env: string,
  body: (
    term: Awaited<ReturnType<typeof tmuxChat>>,
    other: ReturnType<typeof createChatClient>,
  ) => Promise<void>,
) {
  const core = await startCoreServer({ port: 0 });
  const addr = `127.0.0.1:${core.port}`;
  const other = createChatClient(addr, { "grpc.use_local_subchannel_pool": 1 });
  const term = await tmuxChat(`chat-test-${Deno.pid}-${name}`, addr, env);
  try {
    await term.waitFor("joined tty as Dana");
    await body(term, other);
  } finally {
    await term.close();
    other.close();
    await core.shutdown(100);
  }
}

Deno.test("deno task chat at a terminal keeps the line being typed intact and colours users", async () => {
  // CI exports NO_COLOR=1, and tmux passes its environment on: unset it.
  await atTerminal(
    "color",
    "env -u NO_COLOR TERM=xterm-256color",
    async (term, other) => {
      await term.tmux("send-keys", "-t", "0", "-l", "half typed");
      await term.waitFor("Dana> half typed");
      for (let i = 1; i <= 3; i++) {
        await other.sendMessage({
          user: "Omar",
          room: "tty",
          content: `hi ${i}`,
        });
      }
      await term.waitFor("Omar: hi 3");
      const lines = (await term.screen()).trimEnd().split("\n");
      // The incoming lines went above the prompt; the typed text is still there.
      assert.equal(lines.at(-1), "Dana> half typed");
      assert.equal(lines.at(-2), "[tty] Omar: hi 3");
      const colored = await term.screen(true);
      // tmux re-encodes the escapes: a foreground colour right before the name,
      // magenta before the system line.
      // deno-lint-ignore no-control-regex
      assert.match(colored, /\x1b\[9?[1-6]m(\x1b\[49m)?Omar\x1b\[39m: hi 1/);
      // deno-lint-ignore no-control-regex
      assert.match(colored, /\x1b\[35m\[tty\] \*System: Welcome/);
      await term.tmux("send-keys", "-t", "0", "-l", " and done");
      await term.tmux("send-keys", "-t", "0", "Enter");
      await term.waitFor("[tty] Dana: half typed and done");
    },
  );
});

Deno.test("deno task chat at a terminal prints no colour when NO_COLOR is set", async () => {
  await atTerminal(
    "nocolor",
    "TERM=xterm-256color NO_COLOR=1",
    async (term, other) => {
      await other.sendMessage({ user: "Omar", room: "tty", content: "plain" });
      await term.waitFor("[tty] Omar: plain");
      const screen = await term.screen(true);
      // deno-lint-ignore no-control-regex
      assert.ok(!/\x1b\[[\d;]*m/.test(screen), JSON.stringify(screen));
    },
  );
});

Deno.test("deno task chat --bidi reopens its Chat stream after a core restart and sends what was typed meanwhile", async () => {
  const core = await durableCore();
  try {
    const chat = chatIn(core.addr, "bidi", "Eve", "--bidi");
    await chat.waitFor("joined bidi as Eve");
    await chat.type("before");
    await chat.waitFor("[bidi] *Server: Echo: before");
    await core.stop();
    await chat.waitFor("-- connection lost");
    await chat.type("during");
    await core.start();
    await chat.waitFor("-- reconnected to bidi");
    await chat.waitFor("[bidi] *Server: Echo: during");
    await chat.waitFor("[bidi] Eve: during");
    const r = await chat.finish();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /not sent yet: "during"/);
    assert.equal(count(r.stdout, "[bidi] Eve: during\n"), 1);
    assert.equal(count(r.stdout, "[bidi] Eve: before\n"), 1);
  } finally {
    await core.close();
  }
});

Deno.test("deno task chat too slow for the room gets every message once: the core catches it up from history", async () => {
  const core = await startCoreServer({
    port: 0,
    queueSize: 4,
    slowConsumer: "drop",
    historySize: 100_000,
  });
  const addr = `127.0.0.1:${core.port}`;
  const poster = createChatClient(addr, {
    "grpc.use_local_subchannel_pool": 1,
  });
  const chat = chatIn(addr, "busy", "Sam");
  const total = 6000;
  try {
    await chat.waitFor("joined busy as Sam");
    // The chat's stdout is not read while the room gets busy: its writes
    // block, it stops reading from the core, and the core holds back.
    let posted!: () => void;
    chat.stall(new Promise<void>((r) => posted = r));
    const pad = "x".repeat(200);
    for (let i = 1; i <= total; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, k) =>
          poster.sendMessage({
            user: "Poster",
            room: "busy",
            content: `m${i + k} ${pad}`,
          })),
      );
    }
    posted();
    await chat.waitFor(`Poster: m${total} `, "the last message");
    const r = await chat.finish();
    assert.equal(r.code, 0, r.stderr);
    const seen = [...r.stdout.matchAll(/Poster: m(\d+) /g)].map((m) =>
      Number(m[1])
    );
    assert.equal(new Set(seen).size, seen.length, "no duplicate");
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      Array.from({ length: total }, (_, i) => i + 1),
    );
    assert.ok(!r.stdout.includes("missing here"), "no gap reported");
    assert.ok(core.snapshot().fellBehind > 0, "the chat fell behind");
    assert.equal(core.snapshot().dropped, 0, "history held what it missed");
  } finally {
    await chat.finish();
    poster.close();
    await core.shutdown(100);
  }
});

Deno.test("deno task chat sends a line whose answer was lost again with its idempotency key: it shows once, stored once", async () => {
  const core = await startCoreServer({ port: 0, store: "memory" });
  const proxy = answerCuttingProxy(core.port);
  try {
    const chat = chatIn(proxy.addr, "lobby", "Dana");
    await chat.waitFor("joined lobby as Dana");
    await chat.type("answer lost");
    await chat.waitFor("Dana: answer lost");
    // Cut with its answer; sent again after the reconnection.
    await chat.waitFor(/-- reconnected to lobby/);
    await chat.waitFor('-- sent: "answer lost"');
    await chat.type("after");
    await chat.waitFor("Dana: after");
    const r = await chat.finish();
    assert.ok(proxy.cut, "the proxy cut an answer");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(count(r.stdout, "[lobby] Dana: answer lost\n"), 1, r.stdout);
    // The room holds it once.
    assert.deepEqual(await roomContents(core.port, "lobby"), [
      "answer lost",
      "after",
    ]);
  } finally {
    await proxy.close();
    await core.shutdown(500);
  }
});

Deno.test("deno task chat --bidi sends a line whose echo was lost again with its idempotency key: it shows once, stored once", async () => {
  const core = await startCoreServer({ port: 0, store: "memory" });
  const proxy = answerCuttingProxy(core.port, "/chat.ChatService/Chat");
  try {
    const chat = chatIn(proxy.addr, "bidi", "Eve", "--bidi");
    await chat.waitFor("joined bidi as Eve");
    await chat.type("echo lost");
    // Stored and broadcast, the connection cut as its echo came back, sent
    // again on the next stream: echoed then.
    await chat.waitFor('-- sent: "echo lost"');
    await chat.waitFor("[bidi] *Server: Echo: echo lost");
    await chat.type("after");
    await chat.waitFor("[bidi] Eve: after");
    const r = await chat.finish();
    assert.ok(proxy.cut, "the proxy cut an echo");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /the Chat stream broke .*; 1 unconfirmed/);
    assert.equal(count(r.stdout, "[bidi] Eve: echo lost\n"), 1, r.stdout);
    assert.deepEqual(await roomContents(core.port, "bidi"), [
      "echo lost",
      "after",
    ]);
  } finally {
    await proxy.close();
    await core.shutdown(500);
  }
});

Deno.test("deno task chat --bidi as a user whose name starts with echo_ leaves once its line shows, not after --flush-ms", async () => {
  const core = await startCoreServer({ port: 0, store: "memory" });
  try {
    const chat = chatIn(
      `127.0.0.1:${core.port}`,
      "bidi",
      "echo_eve",
      "--bidi",
      "--flush-ms",
      "30000",
    );
    await chat.waitFor("joined bidi as echo_eve");
    await chat.type("hello");
    await chat.waitFor("[bidi] echo_eve: hello");
    const t0 = Date.now();
    const r = await chat.finish();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Its own message was taken for an echo, and the session waited for it.
    assert.ok(Date.now() - t0 < 20_000, "waited out --flush-ms");
  } finally {
    await core.shutdown(500);
  }
});
