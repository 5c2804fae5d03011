import assert from "node:assert/strict";
import { join } from "node:path";
import type { HistoryStore } from "../rooms/history_store.ts";
import { readLines } from "../../supervisor/supervisor.ts";
import { limitFileSize, withTempDir } from "../../tests/support/process.ts";
import { COMPACTION_STEPS, type CompactionStep } from "./log_compaction.ts";
import { listDir, lockDir, segmentName, snapshotName } from "./log_files.ts";
import { type LogStore, openLogStore } from "./log_store.ts";
import { segmentHead } from "./log_recovery.ts";
import { StoreOpenError } from "./store_open_error.ts";
import { createMemoryStore } from "./memory_store.ts";

const encoder = new TextEncoder();
const body = (s: string) => encoder.encode(s);
const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const CHILD =
  new URL("../../tests/fixtures/log_store_child.ts", import.meta.url)
    .pathname;

async function contents(store: HistoryStore, room: string) {
  return (await store.read(room, 0, 1_000_000)).map((
    m,
  ) => [m.offset, text(m.body)]);
}

// deno-lint-ignore no-explicit-any
type Reply = any;

/** The log store in a child process (tests/fixtures/log_store_child.ts). */
async function startChild(
  dataDir: string,
  options: { compactBytes?: number; crashAt?: CompactionStep | "" } = {},
) {
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CHILD,
      dataDir,
      "100000",
      String(options.compactBytes ?? 64 * 1024 * 1024),
      options.crashAt ?? "",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = readLines(proc.stdout);
  const stderr = new Response(proc.stderr).text();
  const writer = proc.stdin.getWriter();
  const next = async (): Promise<Reply | undefined> => {
    const r = await lines.next();
    return r.done ? undefined : JSON.parse(r.value);
  };
  const ready = await next();
  const child = {
    pid: proc.pid,
    ready,
    stderr,
    /** Sends a command; undefined when the process is gone. */
    async send(cmd: unknown): Promise<Reply | undefined> {
      try {
        await writer.write(encoder.encode(JSON.stringify(cmd) + "\n"));
      } catch {
        return undefined; // it died
      }
      return await next();
    },
    append(room: string, content: string, lastId: number) {
      return child.send({
        op: "append",
        entries: [{ room, body: content }],
        lastId,
      });
    },
    async [Symbol.asyncDispose]() {
      await writer.close().catch(() => {});
      try {
        proc.kill("SIGKILL");
      } catch { /* exited */ }
      await lines.return(undefined);
      await proc.status;
      await stderr;
    },
  };
  return child;
}

Deno.test("openLogStore() fails a batch whose write fails (file size limit), cuts the log back, and the next append goes on", async () => {
  await withTempDir(async (dataDir) => {
    const segment = join(dataDir, segmentName(1));
    {
      await using child = await startChild(dataDir);
      assert.equal((await child.append("r", "one", 1)).appended[0].offset, 1);
      const size = Deno.statSync(segment).size;
      await limitFileSize(child.pid, size + 100);
      const failed = await child.send({
        op: "append",
        entries: [
          { room: "r", body: "x".repeat(500) },
          { room: "new", body: "n" },
        ],
        lastId: 3,
      });
      assert.equal(failed.ok, false);
      assert.match(failed.error, /too large/i);
      assert.equal(failed.status.state, "down");
      // The part that was written (up to the limit) is cut off again.
      assert.equal(Deno.statSync(segment).size, size);
      // A batch that fits is stored at the offsets the failed one had.
      const two = await child.append("r", "two", 4);
      assert.equal(two.ok, true, two.error);
      assert.equal(two.appended[0].offset, 2);
      assert.equal(two.status.state, "ok");
      assert.equal(two.status.failedCommits, 1);
      await limitFileSize(child.pid, "unlimited");
      const three = await child.send({
        op: "append",
        entries: [
          { room: "r", body: "x".repeat(500) },
          { room: "new", body: "n" },
        ],
        lastId: 6,
      });
      assert.deepEqual(three.appended.map((a: Reply) => a.offset), [3, 1]);
      assert.equal((await child.send({ op: "close" })).ok, true);
    }
    const store = openLogStore({ dataDir, size: 100, ttlMs: 0 });
    try {
      assert.deepEqual(await contents(store, "r"), [
        [1, "one"],
        [2, "two"],
        [3, "x".repeat(500)],
      ]);
      assert.deepEqual(await contents(store, "new"), [[1, "n"]]);
      assert.equal(store.lastMessageId, 6);
    } finally {
      await store.close();
    }
  });
});

/** 20 messages in room "r", compacted along the way (snapshots 2, 3, ...). */
async function compacted(dataDir: string) {
  const store = openLogStore({
    dataDir,
    size: 100,
    ttlMs: 0,
    compactBytes: 200,
  });
  for (let i = 1; i <= 20; i++) {
    store.appendSync([{ room: "r", body: body(`m${i}`), timeMs: i }], i);
  }
  await store.idle();
  await store.close();
}

/** Three batches in two rooms; returns the epochs. */
async function fill(dataDir: string) {
  const store = openLogStore({ dataDir, size: 100, ttlMs: 0 });
  try {
    const a = store.appendSync([{ room: "a", body: body("a1"), timeMs: 1 }], 1);
    store.appendSync([{ room: "b", body: body("b1"), timeMs: 2 }], 2);
    store.appendSync([{ room: "a", body: body("a2"), timeMs: 3 }], 3);
    return a[0].epoch;
  } finally {
    await store.close();
  }
}

Deno.test("openLogStore() cuts off a torn last write with a warning and keeps everything before it", async () => {
  for (
    const tear of [
      (frame: Uint8Array) => frame.subarray(0, 5), // header cut short
      (frame: Uint8Array) => frame.subarray(0, frame.length - 3), // payload
      (frame: Uint8Array) => new Uint8Array(frame.length + 4096), // zeros
    ]
  ) {
    await withTempDir(async (dataDir) => {
      const epoch = await fill(dataDir);
      const path = join(dataDir, segmentName(1));
      const good = await Deno.readFile(path);
      // A copy of the last frame (message a2: 12 + 25 + 2 + 9 bytes).
      const last = good.subarray(good.length - 48);
      const torn = tear(last);
      await Deno.writeFile(path, torn, { append: true });
      const warnings: string[] = [];
      const store = openLogStore({
        dataDir,
        size: 100,
        ttlMs: 0,
        warn: (m) => warnings.push(m),
      });
      try {
        assert.equal(warnings.length, 1);
        assert.match(
          warnings[0],
          new RegExp(
            `${path}: cut off ${torn.length} bytes at byte ${good.length}`,
          ),
        );
        assert.deepEqual(await Deno.readFile(path), good);
        assert.deepEqual(await contents(store, "a"), [[1, "a1"], [2, "a2"]]);
        assert.equal((await store.position("a")).epoch, epoch);
        assert.equal(
          store.appendSync([{ room: "a", body: body("a3"), timeMs: 4 }], 4)[0]
            .offset,
          3,
        );
      } finally {
        await store.close();
      }
      const again = openLogStore({ dataDir, size: 100, ttlMs: 0 });
      try {
        assert.deepEqual(await contents(again, "a"), [
          [1, "a1"],
          [2, "a2"],
          [3, "a3"],
        ]);
        assert.equal(again.lastMessageId, 4);
      } finally {
        await again.close();
      }
    });
  }
});

Deno.test("openLogStore() refuses a damaged record followed by good ones, a damaged snapshot, a missing segment: StoreOpenError naming the file, nothing changed", async () => {
  const refuses = (dataDir: string, pattern: RegExp) => {
    const before = new Map<string, Uint8Array>();
    for (const e of Deno.readDirSync(dataDir)) {
      before.set(e.name, Deno.readFileSync(join(dataDir, e.name)));
    }
    assert.throws(
      () => openLogStore({ dataDir, size: 100, ttlMs: 0 }),
      (err: unknown) => {
        assert.ok(err instanceof StoreOpenError, String(err));
        assert.match(err.message, pattern);
        return true;
      },
    );
    for (const [name, bytes] of before) {
      assert.deepEqual(Deno.readFileSync(join(dataDir, name)), bytes, name);
    }
  };
  await withTempDir(async (dataDir) => {
    await fill(dataDir);
    const path = join(dataDir, segmentName(1));
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 60] ^= 0x40; // inside message b1's frame
    await Deno.writeFile(path, bytes);
    refuses(
      dataDir,
      new RegExp(`${path} is damaged at byte \\d+: .*, and records follow it`),
    );
  });
  await withTempDir(async (dataDir) => {
    await fill(dataDir);
    const path = join(dataDir, segmentName(1));
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 50] ^= 0x40; // the last frame's header
    await Deno.writeFile(path, bytes);
    refuses(dataDir, new RegExp(`${path} is damaged at byte`));
  });
  // A complete last frame whose checksum does not match is not a torn
  // write (kill -9 cannot leave one): cutting it off would hand its offsets
  // out again under the same epoch.
  for (const after of [0, 100]) {
    await withTempDir(async (dataDir) => {
      await fill(dataDir);
      const path = join(dataDir, segmentName(1));
      const bytes = await Deno.readFile(path);
      const last = bytes.length - 48;
      bytes[bytes.length - 1] ^= 1; // the last frame's payload
      const damaged = new Uint8Array(bytes.length + after);
      damaged.set(bytes);
      await Deno.writeFile(path, damaged);
      refuses(
        dataDir,
        new RegExp(
          `${path} is damaged at byte ${last}: a frame whose checksum does not match`,
        ),
      );
    });
  }
  await withTempDir(async (dataDir) => {
    await compacted(dataDir);
    const snap = join(dataDir, snapshotName(2));
    const bytes = await Deno.readFile(snap);
    await Deno.writeFile(snap, bytes.subarray(0, bytes.length - 20));
    refuses(dataDir, new RegExp(`${snap} is damaged`));
    await Deno.writeFile(snap, bytes);
    await Deno.writeTextFile(join(dataDir, segmentName(4)), "");
    refuses(
      dataDir,
      new RegExp(`${join(dataDir, segmentName(3))} is missing`),
    );
  });
  // roll() creates segment N before snapshot N: a snapshot without its
  // segment lost the newest commits (a fresh segment would hand out their
  // offsets again under the same epoch).
  await withTempDir(async (dataDir) => {
    await compacted(dataDir);
    const { snapshots, segments } = listDir(dataDir);
    const snap = snapshots.at(-1)!;
    for (const s of segments.filter((s) => s >= snap)) {
      await Deno.remove(join(dataDir, segmentName(s)));
    }
    refuses(
      dataDir,
      new RegExp(`${join(dataDir, segmentName(snap))} is missing`),
    );
  });
  await withTempDir(async (dataDir) => {
    await Deno.writeTextFile(
      join(dataDir, segmentName(1)),
      "not a log at all\n".repeat(50),
    );
    refuses(dataDir, /is damaged at byte 0/);
  });
});

Deno.test("openLogStore() refuses a data directory another process has open", async () => {
  await withTempDir(async (dataDir) => {
    {
      await using child = await startChild(dataDir);
      assert.equal(child.ready.ready, true);
      assert.throws(
        () => openLogStore({ dataDir, size: 10, ttlMs: 0 }),
        new RegExp(
          `data directory ${dataDir} is in use by another process \\(${dataDir}/history.lock is locked\\)`,
        ),
      );
    }
    const store = openLogStore({ dataDir, size: 10, ttlMs: 0 });
    await store.close();
  });
});

Deno.test("openLogStore() compacts into a snapshot across turns: the same rooms, offsets, epochs and ids after a reopen, older files gone", async () => {
  await withTempDir(async (dataDir) => {
    const options = { dataDir, size: 5, ttlMs: 0, compactBytes: 2000 };
    const store = openLogStore(options);
    const epochs = new Map<string, string>();
    let id = 0;
    try {
      for (let round = 0; round < 30; round++) {
        for (let i = 0; i < 10; i++) {
          const room = `room${i}`;
          const [a] = store.appendSync(
            [{ room, body: body(`${room}:${round}`), timeMs: round }],
            ++id,
          );
          epochs.set(room, a.epoch);
        }
        await new Promise((r) => setTimeout(r, 0)); // let compactions run
      }
      await store.idle();
    } finally {
      await store.close();
    }
    const names = [...Deno.readDirSync(dataDir)].map((e) => e.name).sort();
    const snaps = names.filter((n) => n.endsWith(".snapshot"));
    assert.equal(snaps.length, 1, names.join(" "));
    assert.ok(Number(snaps[0].slice(8, 20)) > 2, "compacted more than once");
    assert.equal(names.filter((n) => n.endsWith(".log")).length, 1);
    const again = openLogStore(options);
    try {
      assert.equal(again.lastMessageId, 300);
      for (let i = 0; i < 10; i++) {
        const room = `room${i}`;
        assert.deepEqual(await again.position(room), {
          epoch: epochs.get(room),
          offset: 30,
        });
        assert.deepEqual(
          await contents(again, room),
          [25, 26, 27, 28, 29].map((r) => [r + 1, `${room}:${r}`]),
        );
      }
    } finally {
      await again.close();
    }
  });
});

Deno.test("openLogStore() forgets rooms silent past the TTL, also after a reopen", async () => {
  await withTempDir(async (dataDir) => {
    const options = { dataDir, size: 10, ttlMs: 200 };
    const store = openLogStore(options);
    let epoch: string;
    try {
      store.appendSync([
        { room: "old", body: body("o"), timeMs: Date.now() },
      ], 1);
      epoch = (await store.position("old")).epoch;
      await new Promise((r) => setTimeout(r, 1300)); // one sweep (every 1 s)
    } finally {
      await store.close();
    }
    const again = openLogStore({ ...options, ttlMs: 0 });
    try {
      const p = await again.position("old");
      assert.equal(p.offset, 0);
      assert.notEqual(p.epoch, epoch);
    } finally {
      await again.close();
    }
  });
});

Deno.test("openLogStore() writes nothing for a room only asked for (subscribing to many names costs no disk); its epoch is logged with its first message", async () => {
  await withTempDir(async (dataDir) => {
    const options = { dataDir, size: 10, ttlMs: 0 };
    const file = join(dataDir, segmentName(1));
    const store = openLogStore(options);
    let epoch: string;
    try {
      const before = (await Deno.stat(file)).size;
      for (let i = 0; i < 2000; i++) {
        await store.position(`r${i % 7}`);
        store.release!(`r${i % 7}`);
      }
      await store.position("kept waiting");
      assert.equal((await Deno.stat(file)).size, before);
      epoch = (await store.position("room")).epoch;
      const [m] = store.appendSync([
        { room: "room", body: body("first"), timeMs: Date.now() },
      ], 1);
      assert.deepEqual(m, { offset: 1, epoch });
    } finally {
      await store.close();
    }
    const again = openLogStore(options);
    try {
      assert.deepEqual(await again.position("room"), { epoch, offset: 1 });
      assert.deepEqual(await contents(again, "room"), [[1, "first"]]);
    } finally {
      await again.close();
    }
  });
});

Deno.test("openLogStore() takes the numbers of dropped rooms again and never wraps a room number past u32", async () => {
  await withTempDir(async (dataDir) => {
    // A log whose next room number is the last u32 one.
    await Deno.writeFile(
      join(dataDir, segmentName(1)),
      segmentHead(1, 0, 0xffff_ffff),
    );
    const options = { dataDir, size: 10, ttlMs: 200 };
    const store = openLogStore(options);
    try {
      store.appendSync([{ room: "a", body: body("a"), timeMs: Date.now() }], 1);
      assert.throws(
        () =>
          store.appendSync([
            { room: "b", body: body("b"), timeMs: Date.now() },
          ], 2),
        /no room number left for b/,
      );
      assert.equal((await store.position("b")).offset, 0);
      await new Promise((r) => setTimeout(r, 1300)); // "a" swept: dropped
      assert.equal((await store.position("a")).offset, 0);
      const [c] = store.appendSync([
        { room: "c", body: body("c"), timeMs: Date.now() },
      ], 3);
      assert.equal(c.offset, 1);
    } finally {
      await store.close();
    }
    const again = openLogStore({ ...options, ttlMs: 0 });
    try {
      assert.deepEqual(await contents(again, "c"), [[1, "c"]]);
      assert.equal((await again.position("a")).offset, 0);
      assert.equal((await again.position("b")).offset, 0);
    } finally {
      await again.close();
    }
  });
});

const STEPS = COMPACTION_STEPS;

Deno.test("a log store killed at each step of a compaction reopens with every acknowledged message", async () => {
  for (const step of STEPS) {
    await withTempDir(async (dataDir) => {
      const acked: { room: string; content: string; offset: number }[] = [];
      /** Sent when the process died: may or may not be stored. */
      let inflight: { room: string; content: string } | undefined;
      let epoch = "";
      let id = 0;
      {
        await using child = await startChild(dataDir, {
          compactBytes: 4096,
          crashAt: step,
        });
        // Some bodies big enough that a snapshot takes several chunks.
        for (let i = 1; i <= 400 && inflight === undefined; i++) {
          const room = `r${i % 3}`;
          const content = `${i} ${"y".repeat(i % 7 === 0 ? 300_000 : 50)}`;
          const r = await child.append(room, content, ++id);
          if (r === undefined) {
            inflight = { room, content };
            break;
          }
          assert.equal(r.ok, true, r.error);
          if (room === "r0") epoch = r.appended[0].epoch;
          acked.push({ room, content, offset: r.appended[0].offset });
        }
        assert.ok(inflight !== undefined, `never reached ${step}`);
      }
      for (let pass = 0; pass < 2; pass++) {
        const store = openLogStore({
          dataDir,
          size: 100_000,
          ttlMs: 0,
          compactBytes: 4096,
        });
        try {
          let extra = 0;
          for (const room of ["r0", "r1", "r2"]) {
            const kept = acked.filter((a) => a.room === room);
            const got = await contents(store, room);
            if (got.length === kept.length + 1 && room === inflight!.room) {
              // Written but not acknowledged: allowed, as the last one.
              assert.equal(got.at(-1)![1], inflight!.content);
              acked.push({ ...inflight!, offset: got.at(-1)![0] as number });
              extra = 1;
              got.pop();
            }
            assert.equal(got.length, kept.length, `${step}: ${room}`);
            got.forEach(([offset, content], i) => {
              assert.equal(offset, kept[i].offset);
              assert.equal(content, kept[i].content);
            });
          }
          inflight = { room: "", content: "" };
          assert.equal((await store.position("r0")).epoch, epoch);
          assert.ok(
            store.lastMessageId === id ||
              store.lastMessageId === id - 1 + extra,
            `${step}: last id ${store.lastMessageId}, sent ${id}`,
          );
          // Go on (and compact to the end) before the second pass.
          for (let i = 0; i < 20; i++) {
            const content = `more ${i} ${"z".repeat(300)}`;
            const [a] = store.appendSync(
              [{ room: "r0", body: body(content), timeMs: Date.now() }],
              ++id,
            );
            acked.push({ room: "r0", content, offset: a.offset });
          }
          await store.idle();
        } finally {
          await store.close();
        }
      }
    });
  }
});

Deno.test("openLogStore() bounds retained bytes per room (the last message always kept) and in all (least recently written rooms lose their oldest first), the same after a reopen and a snapshot", async () => {
  await withTempDir(async (dataDir) => {
    const opts = { dataDir, size: 100, ttlMs: 0, bytes: 1000, maxBytes: 2000 };
    let id = 0;
    const put = (store: LogStore, room: string, n: number) =>
      store.appendSync([{ room, body: bytes(n, id % 250), timeMs: 1 }], ++id);
    const retained = async (store: LogStore) => {
      const out: Record<string, number[]> = {};
      for (const room of ["a", "b", "c", "d", "e"]) {
        out[room] = (await store.read(room, 0, 1000)).map((m) => m.offset);
      }
      return out;
    };
    const first = openLogStore({ ...opts, compactBytes: 1e12 });
    try {
      for (let i = 0; i < 5; i++) put(first, "a", 300); // a: 3, 4, 5 (900 B)
      for (let i = 0; i < 3; i++) put(first, "b", 300); // b: 1, 2, 3
      // Over the room's 1000 B but kept (its last); 3300 B in all: a loses
      // 3, 4, 5, then b (the next least recently written) 1, 2.
      put(first, "c", 1500);
      put(first, "a", 100); // order of last writes: b, c, a
      const want = { a: [6], b: [3], c: [1], d: [], e: [] };
      assert.deepEqual(await retained(first), want);
      assert.equal((await first.read("c", 0, 1))[0].body.length, 1500);
      await first.close();
      const second = openLogStore({ ...opts, compactBytes: 1 });
      try {
        assert.deepEqual(await retained(second), want);
        put(second, "d", 50); // rolls and writes a snapshot
        await second.idle();
      } finally {
        await second.close();
      }
      assert.ok(listDir(dataDir).snapshots.length === 1);
      const third = openLogStore({ ...opts, compactBytes: 1e12 });
      try {
        // The snapshot kept the order of last writes (b, c, a, d), not the
        // order the rooms were created in: b loses its message, not a.
        put(third, "e", 200);
        assert.deepEqual(await retained(third), {
          a: [6],
          b: [],
          c: [1],
          d: [1],
          e: [1],
        });
      } finally {
        await third.close();
      }
      const fourth = openLogStore({ ...opts, compactBytes: 1e12 });
      try {
        assert.deepEqual(await retained(fourth), {
          a: [6],
          b: [],
          c: [1],
          d: [1],
          e: [1],
        });
        assert.equal((await fourth.position("b")).offset, 3);
      } finally {
        await fourth.close();
      }
    } catch (err) {
      await first.close();
      throw err;
    }
  });
});

Deno.test("openLogStore(): a snapshot keeps the order in which rooms became empty, so the room bound forgets the same rooms after a restart", async () => {
  await withTempDir(async (dataDir) => {
    // With --history-size 0 every written room holds nothing: the bound
    // forgets the longest empty first.
    const opts = { dataDir, size: 0, ttlMs: 0, maxRooms: 100 };
    let id = 0;
    const put = (store: LogStore, room: string) =>
      store.appendSync([{ room, body: body(room), timeMs: 1 }], ++id);
    const first = openLogStore({ ...opts, compactBytes: 1e12 });
    try {
      for (let i = 0; i < 80; i++) put(first, `r${i}`);
      // Written again newest first: r79 is now the longest empty, r0 the
      // most recent, against the order the rooms were made in.
      for (let i = 79; i >= 0; i--) put(first, `r${i}`);
    } finally {
      await first.close();
    }
    const second = openLogStore({ ...opts, compactBytes: 1 });
    try {
      put(second, "x"); // rolls and writes a snapshot
      await second.idle();
    } finally {
      await second.close();
    }
    assert.equal(listDir(dataDir).snapshots.length, 1);
    const third = openLogStore({ ...opts, compactBytes: 1e12 });
    try {
      for (let i = 0; i < 40; i++) put(third, `n${i}`);
      const kept: number[] = [];
      for (let i = 0; i < 80; i++) {
        if ((await third.position(`r${i}`)).offset === 2) kept.push(i);
        else third.release!(`r${i}`); // asked for just now: let go
      }
      // 121 rooms for 100: at least 21 of the r rooms went, the ones
      // emptied longest ago (r79 down), not the first made (r0 up).
      assert.ok(kept.length >= 40 && kept.length <= 59, `${kept.length} kept`);
      assert.deepEqual(kept, kept.map((_, i) => i));
      assert.equal((await third.position("x")).offset, 1);
      assert.equal((await third.position("n39")).offset, 1);
    } finally {
      await third.close();
    }
  });
});

Deno.test("a log store syncs a segment before it creates the next one (power loss: only the newest segment can lose its end)", async () => {
  await withTempDir(async (dataDir) => {
    const trace = join(dataDir, "strace.out");
    const data = join(dataDir, "data");
    const proc = new Deno.Command("strace", {
      args: [
        "-f",
        "-y",
        "-e",
        "trace=openat,fdatasync,fsync",
        "-o",
        trace,
        Deno.execPath(),
        "run",
        "-A",
        CHILD,
        data,
        "100",
        "300",
        "",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const lines = readLines(proc.stdout);
    const writer = proc.stdin.getWriter();
    const send = async (cmd: unknown) => {
      await writer.write(encoder.encode(JSON.stringify(cmd) + "\n"));
      return JSON.parse((await lines.next()).value);
    };
    try {
      assert.equal(JSON.parse((await lines.next()).value).ready, true);
      for (let i = 1; i <= 10; i++) {
        const r = await send({
          op: "append",
          entries: [{ room: "r", body: "x".repeat(100) }],
          lastId: i,
        });
        assert.equal(r.ok, true, r.error);
      }
      assert.equal((await send({ op: "idle" })).ok, true);
      assert.equal((await send({ op: "close" })).ok, true);
    } finally {
      await writer.close().catch(() => {});
      await lines.return(undefined);
      await proc.status;
    }
    const log = await Deno.readTextFile(trace);
    const seg = (n: number) => join(data, segmentName(n));
    // The roll's sync runs in the event loop's thread: the openat after it
    // comes once it returned.
    const synced = log.search(new RegExp(`fdatasync\\(\\d+<${seg(1)}>`));
    const created = log.search(new RegExp(`openat\\([^\\n]*"${seg(2)}"`));
    assert.ok(created > 0, "segment 2 was created");
    assert.ok(
      synced >= 0 && synced < created,
      "segment 1 synced before segment 2 was created",
    );
  });
});

Deno.test("openLogStore() closes the segment when its head cannot be written (StoreOpenError, no file left open)", async () => {
  await withTempDir(async (dataDir) => {
    // Every write to /dev/full fails with ENOSPC; its size reads as 0.
    await Deno.symlink("/dev/full", join(dataDir, segmentName(1)));
    assert.throws(
      () => openLogStore({ dataDir, size: 10, ttlMs: 0 }),
      (err: unknown) => {
        assert.ok(err instanceof StoreOpenError, String(err));
        assert.match(err.message, /cannot open .* for writing: .*space/i);
        return true;
      },
    );
    // Nothing of this process is left open on it.
    const open: string[] = [];
    for (const fd of Deno.readDirSync("/proc/self/fd")) {
      try {
        open.push(Deno.readLinkSync(`/proc/self/fd/${fd.name}`));
      } catch { /* closed meanwhile (the directory's own fd) */ }
    }
    assert.ok(!open.includes("/dev/full"), "the segment was left open");
    // The lock was let go.
    lockDir(dataDir).close();
  });
});

/** A store compacting past 300 bytes, its warnings collected. */
function warned(dataDir: string) {
  const warnings: string[] = [];
  const store = openLogStore({
    dataDir,
    size: 100,
    ttlMs: 0,
    compactBytes: 300,
    warn: (m) => warnings.push(m),
  });
  return { store, warnings };
}

Deno.test("openLogStore() rolls over a stale, empty or head-only next segment left by a failed remove, and refuses to overwrite one with records", async () => {
  for (const stale of ["empty", "head"] as const) {
    await withTempDir(async (dataDir) => {
      const { store, warnings } = warned(dataDir);
      try {
        const next = join(dataDir, segmentName(2));
        if (stale === "empty") await Deno.writeFile(next, new Uint8Array());
        else await Deno.writeFile(next, segmentHead(2, 0, 1));
        for (let i = 1; i <= 10; i++) {
          store.appendSync([{ room: "r", body: body(`m${i}`), timeMs: i }], i);
          store.appendSync([{ room: "r", body: bytes(100, i), timeMs: i }], i);
        }
        await store.idle();
        assert.deepEqual(warnings, []);
        assert.ok(listDir(dataDir).snapshots.length > 0, stale);
      } finally {
        await store.close();
      }
      const again = openLogStore({ dataDir, size: 100, ttlMs: 0 });
      try {
        assert.equal((await again.position("r")).offset, 20);
      } finally {
        await again.close();
      }
    });
  }
  await withTempDir(async (dataDir) => {
    const { store, warnings } = warned(dataDir);
    const next = join(dataDir, segmentName(2));
    const foreign = new Uint8Array(500).fill(7);
    try {
      await Deno.writeFile(next, foreign);
      for (let i = 1; i <= 10; i++) {
        store.appendSync([{ room: "r", body: bytes(100, i), timeMs: i }], i);
      }
      await store.idle();
      assert.match(warnings[0], /cannot start a new log segment: .* exists/);
    } finally {
      await store.close();
    }
    assert.deepEqual(await Deno.readFile(next), foreign);
  });
});

Deno.test("openLogStore() fails a batch too large for one frame's u32 length: nothing stored, its offsets handed out again", async () => {
  await withTempDir(async (dataDir) => {
    const store = openLogStore({
      dataDir,
      size: 100,
      ttlMs: 0,
      maxFrameBytes: 1000,
    });
    try {
      assert.throws(
        () =>
          store.appendSync([
            { room: "r", body: bytes(600, 1), timeMs: 1 },
            { room: "r", body: bytes(600, 2), timeMs: 1 },
          ], 2),
        /a log frame of \d+ bytes is larger than 1000/,
      );
      assert.equal(store.status().state, "down");
      const ok = store.appendSync(
        [{ room: "r", body: body("a"), timeMs: 2 }],
        3,
      );
      assert.equal(ok[0].offset, 1);
    } finally {
      await store.close();
    }
    const again = openLogStore({ dataDir, size: 100, ttlMs: 0 });
    try {
      assert.deepEqual(await contents(again, "r"), [[1, "a"]]);
      assert.equal(again.lastMessageId, 3);
    } finally {
      await again.close();
    }
  });
});

Deno.test("openLogStore() compacts again once the segment outgrows twice the last snapshot (start-up reads at most about 3× the retained bytes)", async () => {
  await withTempDir(async (dataDir) => {
    const store = openLogStore({
      dataDir,
      size: 100,
      ttlMs: 0,
      compactBytes: 1000,
    });
    try {
      let id = 0;
      const put = () =>
        store.appendSync([{ room: "r", body: bytes(200, 1), timeMs: 1 }], ++id);
      for (let i = 0; i < 100; i++) put(); // 100 retained: ~23 KB snapshot
      await store.idle();
      // Until a put starts no compaction (the segment is under the bound).
      let first = listDir(dataDir).snapshots.at(-1)!;
      for (;;) {
        put();
        await store.idle();
        const now = listDir(dataDir).snapshots.at(-1)!;
        if (now === first) break;
        first = now;
      }
      const snapshot = Deno.statSync(join(dataDir, snapshotName(first))).size;
      const segment = join(dataDir, segmentName(first));
      // Grow the segment: it is rolled (and compacted) before 3 × the
      // snapshot (with 4 ×, not).
      while (listDir(dataDir).segments.at(-1)! === first) {
        put();
        const size = Deno.statSync(segment).size;
        assert.ok(size < 3 * snapshot, `${size} bytes, snapshot ${snapshot}`);
      }
      await store.idle();
      assert.ok(listDir(dataDir).snapshots.at(-1)! > first);
    } finally {
      await store.close();
    }
  });
});

Deno.test("log store under byte bounds, compacting across turns while appends go on, reopened six times, reads what a memory store fed the same appends holds", async () => {
  await withTempDir(async (dataDir) => {
    const limits = { size: 2000, ttlMs: 0, bytes: 400_000 };
    const maxBytes = 1_500_000;
    const memory = createMemoryStore({ ...limits, maxBytes });
    let seed = 3;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let id = 0;
    let compactions = 0;
    let crossTurn = 0;
    for (let round = 0; round < 6; round++) {
      const log = openLogStore({
        dataDir,
        ...limits,
        maxBytes,
        compactBytes: 1_000_000 + random(1_000_000),
        onCompaction: (step) => {
          if (step === "done") compactions++;
          if (step === "snapshot-started") crossTurn++;
        },
      });
      assert.equal(log.lastMessageId, id);
      for (let k = 0; k < 1500; k++) {
        const entries = Array.from({ length: 1 + random(4) }, () => ({
          room: `r${random(12)}`,
          // Now and then a body of a chunk of its own.
          body: bytes(random(40) === 0 ? 20_000 : random(6000), random(256)),
          timeMs: 0,
        }));
        id += entries.length;
        const got = log.appendSync(entries, id);
        const want = memory.appendSync!(entries, id);
        assert.deepEqual(got.map((a) => a.offset), want.map((a) => a.offset));
        // Turns go by: the snapshot is written across them.
        if (k % 3 === 0) await new Promise((r) => setTimeout(r, 0));
      }
      await log.idle();
      log.close();
      const again = openLogStore({ dataDir, ...limits, maxBytes });
      assert.equal(again.lastMessageId, id);
      for (let r = 0; r < 12; r++) {
        const got = await again.read(`r${r}`, 0, 1_000_000);
        const want = await memory.read(`r${r}`, 0, 1_000_000);
        assert.deepEqual(
          got.map((m) => m.offset),
          want.map((m) => m.offset),
          `round ${round}, room r${r}`,
        );
        got.forEach((m, i) => assert.deepEqual(m.body, want[i].body));
      }
      again.close();
    }
    memory.close();
    assert.ok(compactions >= 6, `${compactions} compactions`);
    assert.ok(crossTurn >= 6, `${crossTurn} snapshots across turns`);
  });
});
