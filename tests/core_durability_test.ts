/**
 * Durability of room history in the core process: kill -9 under a
 * publishing load with a resuming subscriber (the supervisor restarts the
 * core), and a corrupt or damaged data file at start-up.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import type { Message } from "../gen/chat_pb.ts";
import { type ChatClient, createChatClient } from "../client/rpc.ts";
import { DATA_FILE } from "../server/store/sqlite_store.ts";
import { FrameBuilder } from "../server/store/log_format.ts";
import { segmentName } from "../server/store/log_files.ts";
import { freePort, spawnSupervisedCore } from "./fixtures/goaway_process.ts";
import { spawnCore } from "./support/core_process.ts";
import { take } from "./support/core.ts";

const MAIN = new URL("../server/main.ts", import.meta.url).pathname;

/** A subscriber that resumes from its last offset after every drop. */
function resumingSubscriber(client: ChatClient, room: string) {
  const got: Message[] = [];
  const epochs = new Set<string>();
  let epoch = "";
  let last = 0n;
  let call: grpc.ClientReadableStream<Message> | undefined;
  let stopped = false;
  let resumes = 0;
  const open = () => {
    if (stopped) return;
    const s = client.subscribeMessages({
      room,
      user: "watcher",
      epoch,
      sinceOffset: last,
    }, { deadline: Date.now() + 60_000 });
    call = s;
    let welcomed = false;
    s.on("data", (m: Message) => {
      if (!welcomed) {
        welcomed = true;
        epochs.add(m.epoch);
        epoch = m.epoch;
        return;
      }
      got.push(m);
      last = m.offset;
    });
    s.on("error", () => {
      if (stopped) return;
      resumes++;
      setTimeout(open, 20);
    });
  };
  open();
  return {
    got,
    epochs,
    get resumes() {
      return resumes;
    },
    stop() {
      stopped = true;
      call?.cancel();
    },
  };
}

for (const store of ["log", "sqlite"] as const) {
  Deno.test(`[${store}] kill -9 of the core under load: 0 acknowledged messages lost or duplicated, same epoch, all in history`, async () => {
    const dataDir = await Deno.makeTempDir();
    const port = freePort();
    const sup = spawnSupervisedCore(port, [
      "--store",
      store,
      "--data-dir",
      dataDir,
      "--history-size",
      "1000000",
    ], {
      SUPERVISOR_BASE_DELAY_MS: "20",
    });
    const corePids = sup.corePids;
    const options = {
      "grpc.initial_reconnect_backoff_ms": 50,
      "grpc.max_reconnect_backoff_ms": 100,
    };
    const pub = createChatClient(`127.0.0.1:${port}`, options);
    const subClient = createChatClient(`127.0.0.1:${port}`, {
      ...options,
      "test.channel": 2,
    });
    const watcher = (() => {
      let w: ReturnType<typeof resumingSubscriber> | undefined;
      return {
        start: () => w = resumingSubscriber(subClient, "k"),
        get: () => w!,
      };
    })();
    try {
      await sup.waitLine(new RegExp(`listening on 127\\.0\\.0\\.1:${port}`));
      watcher.start();
      await new Promise((r) => setTimeout(r, 100));

      // Publishers: 8 in parallel, each a sequence of SendMessage calls.
      const acked = new Map<string, bigint>();
      let failed = 0;
      let stop = false;
      let seq = 0;
      const publisher = async () => {
        while (!stop) {
          const content = `p${++seq}`;
          try {
            const res = await pub.sendMessage(
              { user: "pub", room: "k", content },
              { deadline: Date.now() + 2000 },
            );
            acked.set(content, res.offset);
          } catch {
            failed++;
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      };
      const publishers = Array.from({ length: 8 }, publisher);
      await new Promise((r) => setTimeout(r, 400));
      const ackedBeforeKill = acked.size;
      const pid = corePids().at(-1)!;
      Deno.kill(pid, "SIGKILL");
      await sup.waitLine(/restarted as pid \d+/, 10_000);
      // Keep publishing until a good number went through the new process.
      const until = Date.now() + 10_000;
      while (acked.size < ackedBeforeKill + 300 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 20));
      }
      stop = true;
      await Promise.all(publishers);
      assert.ok(
        ackedBeforeKill > 50,
        `only ${ackedBeforeKill} before the kill`,
      );
      assert.ok(acked.size >= ackedBeforeKill + 300, `${acked.size} acked`);

      // The subscriber catches up with every acknowledged offset.
      const maxAcked = [...acked.values()].reduce((a, b) => a > b ? a : b);
      const w = watcher.get();
      const deadline = Date.now() + 10_000;
      while (
        (w.got.at(-1)?.offset ?? 0n) < maxAcked && Date.now() < deadline
      ) await new Promise((r) => setTimeout(r, 20));
      w.stop();

      assert.ok(w.resumes >= 1, "the subscriber was dropped and resumed");
      assert.equal(w.epochs.size, 1, `epochs ${[...w.epochs]}`);
      // One run of consecutive offsets from 1: no gap, no duplicate.
      const offs = w.got.map((m) => Number(m.offset));
      assert.deepEqual(
        offs,
        Array.from({ length: offs.length }, (_, i) => i + 1),
      );
      const byContent = new Map(w.got.map((m) => [m.content, m.offset]));
      let lost = 0, moved = 0;
      for (const [content, offset] of acked) {
        if (!byContent.has(content)) lost++;
        else if (byContent.get(content) !== offset) moved++;
      }
      assert.equal(lost, 0, `${lost} acknowledged messages lost`);
      assert.equal(
        moved,
        0,
        `${moved} acknowledged messages at another offset`,
      );

      // And history has them all, with their offsets, for a new subscriber.
      const all = await new Promise<Message[]>((resolve, reject) => {
        const s = subClient.subscribeMessages({
          room: "k",
          user: "late",
          history: 100_000,
        });
        const out: Message[] = [];
        s.on("data", (m: Message) => {
          out.push(m);
          if (out.length > 1 && out.at(-1)!.offset === maxAcked) {
            s.cancel();
            resolve(out);
          }
        });
        s.on("error", (e) => (e as { code?: number }).code !== 1 && reject(e));
      });
      assert.equal(all[0].epoch, [...w.epochs][0]);
      const history = new Map(all.slice(1).map((m) => [m.content, m.offset]));
      for (const [content, offset] of acked) {
        assert.equal(history.get(content), offset, content);
      }
      console.log(
        `acked ${acked.size} (${ackedBeforeKill} before the kill), failed ${failed}, ` +
          `resumes ${w.resumes}, delivered ${offs.length}`,
      );
    } finally {
      pub.close();
      subClient.close();
      sup.proc.kill("SIGTERM");
      await sup.status;
      for (const pid of corePids()) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}

async function startWith(dataDir: string, store: "log" | "sqlite") {
  return await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "--port",
      "0",
      "--store",
      store,
      "--data-dir",
      dataDir,
    ],
    stdout: "piped",
    stderr: "piped",
    // A core that starts after all (it should have refused) is stopped.
    signal: AbortSignal.timeout(20_000),
  }).output();
}

Deno.test("server/main.ts refuses a data file that is not a database: exit 2, the file named, nothing wiped", async () => {
  const dataDir = await Deno.makeTempDir();
  try {
    const file = join(dataDir, DATA_FILE);
    const junk = new TextEncoder().encode(
      "this is not a database\n".repeat(200),
    );
    await Deno.writeFile(file, junk);
    const out = await startWith(dataDir, "sqlite");
    assert.equal(out.code, 2);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(stderr, new RegExp(`data file ${file} is unreadable`));
    assert.match(stderr, /not a database/);
    assert.deepEqual(await Deno.readFile(file), junk);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("server/main.ts refuses a damaged database (quick_check fails): exit 2, nothing wiped", async () => {
  const dataDir = await Deno.makeTempDir();
  try {
    const file = join(dataDir, DATA_FILE);
    const db = new DatabaseSync(file);
    db.exec("CREATE TABLE t (a TEXT); CREATE INDEX ti ON t (a);");
    const insert = db.prepare("INSERT INTO t VALUES (?)");
    db.exec("BEGIN");
    for (let i = 0; i < 2000; i++) insert.run(`row ${i} `.repeat(10));
    db.exec("COMMIT");
    db.close();
    // Scribble over the middle pages (not the header).
    const bytes = await Deno.readFile(file);
    for (let i = 8192; i < bytes.length - 4096; i += 7) bytes[i] ^= 0x5a;
    await Deno.writeFile(file, bytes);
    const out = await startWith(dataDir, "sqlite");
    assert.equal(out.code, 2);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(stderr, new RegExp(`data file ${file} is unreadable`));
    assert.deepEqual(await Deno.readFile(file), bytes);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** A core's arguments for the log store in `dataDir`. */
const logCore = (dataDir: string) => [
  "--alive-interval-ms",
  "0",
  "--store",
  "log",
  "--data-dir",
  dataDir,
];

/** A log written by a core: three messages in two rooms. */
async function writeLog(dataDir: string) {
  await using core = await spawnCore(logCore(dataDir));
  const client = createChatClient(core.addr);
  try {
    for (const [room, content] of [["a", "a1"], ["b", "b1"], ["a", "a2"]]) {
      await client.sendMessage({ user: "u", room, content });
    }
  } finally {
    client.close();
  }
  await core.kill("SIGTERM");
  return join(dataDir, segmentName(1));
}

Deno.test("server/main.ts refuses a log with a damaged record followed by good ones: exit 2, the file named, nothing wiped", async () => {
  const dataDir = await Deno.makeTempDir();
  try {
    const file = await writeLog(dataDir);
    const bytes = await Deno.readFile(file);
    bytes[60] ^= 0x40; // in the second frame (the first is the head)
    await Deno.writeFile(file, bytes);
    const out = await startWith(dataDir, "log");
    assert.equal(out.code, 2);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(
      stderr,
      new RegExp(
        `core: ${file} is damaged at byte \\d+: .*, and records follow it`,
      ),
    );
    assert.deepEqual(await Deno.readFile(file), bytes);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("server/main.ts cuts a torn last record off the log with a warning and serves what came before", async () => {
  const dataDir = await Deno.makeTempDir();
  try {
    const file = await writeLog(dataDir);
    const good = await Deno.readFile(file);
    const frame = new FrameBuilder();
    frame.message(1, 3, Date.now(), new Uint8Array(100));
    // A write cut short: the frame's header and part of its payload.
    await Deno.writeFile(file, frame.finish().subarray(0, 50), {
      append: true,
    });
    await using core = await spawnCore(logCore(dataDir));
    assert.match(
      core.output(),
      new RegExp(
        `${file}: cut off 50 bytes at byte ${good.length} \\(an incomplete frame`,
      ),
    );
    assert.deepEqual(await Deno.readFile(file), good);
    const client = createChatClient(core.addr);
    try {
      const sub = client.subscribeMessages({
        room: "a",
        user: "u",
        history: 10,
      });
      const [w, ...history] = await take<Message>(sub, 3);
      assert.equal(w.offset, 2n);
      assert.deepEqual(history.map((m) => m.offset), [1n, 2n]);
      sub.cancel();
    } finally {
      client.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

for (const store of ["log", "sqlite"] as const) {
  // With SQLite too: a second core beside the first would run on the
  // offsets, room rows and message ids it read at its start (failing every
  // post to a room the other wrote, handing out the other's msg_N again).
  Deno.test(`[${store}] server/main.ts refuses a data directory another core has open: exit 2, the directory named`, async () => {
    const dataDir = await Deno.makeTempDir();
    try {
      await using _core = await spawnCore([
        "--alive-interval-ms",
        "0",
        "--store",
        store,
        "--data-dir",
        dataDir,
      ]);
      for (const second of ["log", "sqlite"] as const) {
        const out = await startWith(dataDir, second);
        assert.equal(out.code, 2, `a ${second} core beside a ${store} core`);
        assert.match(
          new TextDecoder().decode(out.stderr),
          new RegExp(
            `core: data directory ${dataDir} is in use by another process`,
          ),
        );
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}

Deno.test("server/main.ts keeps two rooms whose names differ only by a leading BOM apart across a restart", async () => {
  const dataDir = await Deno.makeTempDir();
  const args = logCore(dataDir);
  const rooms = ["\uFEFFlobby", "lobby"];
  try {
    {
      await using core = await spawnCore(args);
      const client = createChatClient(core.addr);
      try {
        for (const room of rooms) {
          await client.sendMessage({ user: "u", room, content: `in ${room}` });
        }
      } finally {
        client.close();
      }
      await core.kill("SIGKILL");
    }
    await using core = await spawnCore(args);
    const client = createChatClient(core.addr);
    try {
      for (const room of rooms) {
        const sub = client.subscribeMessages({ room, user: "u", history: 10 });
        const [w, m] = await take<Message>(sub, 2);
        assert.equal(w.offset, 1n);
        assert.equal(m.room, room);
        assert.equal(m.content, `in ${room}`);
        sub.cancel();
      }
    } finally {
      client.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
