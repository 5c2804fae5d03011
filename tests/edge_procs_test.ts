/**
 * `serve:edge --procs N` (edge/process_group.ts): N edge processes on one
 * port with reusePort, in front of a real core. Both processes take
 * connections (each scrape says which pid answered), a killed child is
 * restarted and serves again, SIGTERM stops them all, and a group that
 * cannot run says why in one line and exits 2.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  SendMessageRequestSchema,
  SendMessageResponseSchema,
} from "../gen/chat_pb.ts";
import {
  encodeEnvelope,
  EnvelopeParser,
  FLAG_TRAILER,
  parseGrpcWebTrailer,
} from "../protocol/mod.ts";
import { startCore } from "./support/core.ts";
import { lines, ROOT, runDeno, takenPort } from "./support/process.ts";

const EDGE = [
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-run",
  "edge/main.ts",
];

/** A running `--procs` edge: its port, its parent, what it printed. */
interface Group extends AsyncDisposable {
  port: number;
  child: Deno.ChildProcess;
  /** stdout and stderr so far (the group's and the children's lines). */
  stderr(): string;
  /** Waits until the output matches `pattern` (at most 20 s). */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray>;
}

async function startGroup(procs: number, upstream: string): Promise<Group> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...EDGE,
      "--procs",
      String(procs),
      "--port",
      "0",
      "--upstream",
      upstream,
      "--log-format",
      "off",
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  let changed: () => void = () => {};
  const pumps = [child.stdout, child.stderr].map(async (stream) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      err += text;
      changed();
    }
  });
  const waitFor = async (pattern: RegExp) => {
    const deadline = Date.now() + 20_000;
    while (true) {
      const m = err.match(pattern);
      if (m) return m;
      if (Date.now() > deadline) {
        throw new Error(`no ${pattern} in edge output:\n${err}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        changed = r;
        timer = setTimeout(r, 200);
      });
      clearTimeout(timer);
    }
  };
  const ready = await waitFor(
    new RegExp(
      `${procs} processes listening on port (\\d+) \\(pids ([\\d, ]+)\\)`,
    ),
  );
  return {
    port: Number(ready[1]),
    child,
    stderr: () => err,
    waitFor,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* already exited */ }
      await child.status;
      await Promise.all(pumps);
    },
  };
}

/** The pid that answers a scrape on a connection of its own. */
async function scrapePid(port: number): Promise<number> {
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { client });
    const text = await res.text();
    const m = text.match(/^chat_edge_process_id (\d+)$/m);
    assert.ok(m, `no chat_edge_process_id in:\n${text.slice(0, 500)}`);
    return Number(m[1]);
  } finally {
    client.close();
  }
}

/** Scrapes on fresh connections until every pid of `want` answered. */
async function seePids(port: number, want: number[]): Promise<Set<number>> {
  const seen = new Set<number>();
  for (let i = 0; i < 200 && !want.every((p) => seen.has(p)); i++) {
    seen.add(await scrapePid(port));
  }
  return seen;
}

/** One gRPC-Web SendMessage through the edge; the message id it got. */
async function sendViaEdge(port: number, content: string): Promise<string> {
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  try {
    const res = await fetch(
      `http://127.0.0.1:${port}/chat.ChatService/SendMessage`,
      {
        method: "POST",
        client,
        headers: { "content-type": "application/grpc-web+proto" },
        body: encodeEnvelope(
          0,
          toBinary(
            SendMessageRequestSchema,
            create(SendMessageRequestSchema, { user: "u", room: "r", content }),
          ),
        ) as Uint8Array<ArrayBuffer>,
      },
    );
    assert.equal(res.status, 200);
    const parser = new EnvelopeParser({
      maxMessageBytes: 1 << 20,
      allowedFlags: FLAG_TRAILER,
    });
    let id = "", status = "";
    for (const env of parser.push(new Uint8Array(await res.arrayBuffer()))) {
      if (env.flags & FLAG_TRAILER) {
        status = parseGrpcWebTrailer(env.data)["grpc-status"];
      } else id = fromBinary(SendMessageResponseSchema, env.data).messageId;
    }
    assert.equal(status, "0");
    return id;
  } finally {
    client.close();
  }
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

Deno.test("serve:edge --procs 2: both processes take connections on one port and proxy calls", async () => {
  await using core = await startCore();
  await using group = await startGroup(2, `http://${core.addr}`);
  const pids = group.stderr().match(/\(pids (\d+), (\d+)\)/)!.slice(1).map(
    Number,
  );
  assert.equal(new Set(pids).size, 2);
  const seen = await seePids(group.port, pids);
  assert.deepEqual([...seen].sort(), [...pids].sort());
  for (let i = 0; i < 6; i++) {
    assert.match(await sendViaEdge(group.port, `hi ${i}`), /^msg_\d+$/);
  }
});

Deno.test("serve:edge --procs 2: a killed child is restarted on the same port; SIGTERM stops all", async () => {
  await using core = await startCore();
  const group = await startGroup(2, `http://${core.addr}`);
  try {
    const [a, b] = group.stderr().match(/\(pids (\d+), (\d+)\)/)!.slice(1)
      .map(Number);
    Deno.kill(a, "SIGKILL");
    const m = await group.waitFor(
      new RegExp(
        `child pid ${a} exited \\(signal SIGKILL\\); restarted as pid (\\d+)`,
      ),
    );
    const restarted = Number(m[1]);
    // The new child listens on the same port and takes connections too.
    await group.waitFor(new RegExp(`process \\d of 2 \\(pid ${restarted}\\)`));
    const seen = await seePids(group.port, [b, restarted]);
    assert.ok(seen.has(restarted) && seen.has(b), `saw ${[...seen]}`);
    assert.ok(!seen.has(a));
    assert.match(await sendViaEdge(group.port, "after restart"), /^msg_\d+$/);

    group.child.kill("SIGTERM");
    const status = await group.child.status;
    assert.equal(status.code, 0, group.stderr());
    assert.ok(!alive(b) && !alive(restarted), "children left running");
    await assert.rejects(scrapePid(group.port));
  } finally {
    await group[Symbol.asyncDispose]();
  }
});

Deno.test("serve:edge --procs 2: children stop by themselves when their supervisor is killed", async () => {
  await using core = await startCore();
  const group = await startGroup(2, `http://${core.addr}`);
  try {
    const pids = group.stderr().match(/\(pids (\d+), (\d+)\)/)!.slice(1).map(
      Number,
    );
    group.child.kill("SIGKILL");
    await group.child.status;
    const deadline = Date.now() + 10_000;
    while (pids.some(alive) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const orphans = pids.filter(alive);
    // An orphan holds the test's pipes: kill it before failing, never hang.
    for (const pid of orphans) Deno.kill(pid, "SIGKILL");
    assert.deepEqual(orphans, [], "orphaned children still run");
  } finally {
    await group[Symbol.asyncDispose]();
  }
});

Deno.test("serve:edge --procs 2 without --allow-run: one line, exit 2", async () => {
  const r = await runDeno([
    "run",
    "--allow-net",
    "--allow-env",
    "edge/main.ts",
    "--procs",
    "2",
  ]);
  assert.equal(r.code, 2);
  assert.deepEqual(lines(r.stderr), [
    "edge: --procs above 1 needs --allow-run (deno task serve:edge has it)",
  ]);
});

Deno.test("serve:edge --procs 2 on a port held by another program: the group stops, exit 2", async () => {
  using taken = takenPort();
  const r = await runDeno([
    ...EDGE,
    "--procs",
    "2",
    "--host",
    "127.0.0.1",
    "--port",
    String(taken.port),
  ]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`edge: port ${taken.port} is in use`));
  assert.match(
    r.stderr,
    /could not be kept running \(bad-config\); stopping all/,
  );
});

Deno.test("serve:edge --procs is checked like any flag", async () => {
  for (const bad of ["0", "65", "x"]) {
    const r = await runDeno([...EDGE, "--procs", bad]);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), [
      `edge: --procs must be an integer from 1 to 64, got "${bad}"`,
    ]);
  }
});
