/**
 * The Deno node:http2 GOAWAY abort (docs/goaway.md), end to end: 20 bursts of
 * 200 unary calls on one connection, each closed with a client GOAWAY, and
 * after every burst a real grpc-js SendMessage must succeed within 2 s.
 *
 * Servers run as child processes: the fault aborts the process that receives
 * the GOAWAY, and that must never be the test runner.
 */
import assert from "node:assert/strict";
import { goawayBurst } from "./fixtures/goaway_burst.ts";
import {
  freePort,
  probeSendMessage,
  spawnSupervisedCore,
  spawnWatched,
} from "./fixtures/goaway_process.ts";

const BURSTS = 20;
const STREAMS_PER_BURST = 200;
const ANSWER_WITHIN_MS = 2_000;

/**
 * Runs the bursts; returns how long each probe took to get an answer.
 * `mayDie`: the core may abort under a burst (the GOAWAY of the one before
 * brought it down while this one ran), which then loses its connection;
 * the probe after it is what must pass.
 */
async function burstAndProbe(
  port: number,
  mayDie = false,
): Promise<number[]> {
  const waits: number[] = [];
  for (let i = 0; i < BURSTS; i++) {
    let ended: number;
    try {
      ended = await goawayBurst(port, { streams: STREAMS_PER_BURST });
    } catch (err) {
      if (!mayDie || !connectionLost(err)) throw err;
      ended = STREAMS_PER_BURST;
    }
    assert.equal(ended, STREAMS_PER_BURST, `burst ${i} left streams open`);
    const probe = await probeSendMessage(port, ANSWER_WITHIN_MS);
    assert.match(probe.messageId, /^msg_\d+$/);
    waits.push(probe.ms);
  }
  return waits;
}

function connectionLost(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BrokenPipe ||
    /connection closed after/.test(String(err));
}

function summary(waits: number[]): string {
  const sorted = [...waits].sort((a, b) => a - b);
  return `median ${sorted[sorted.length >> 1]} ms, max ${sorted.at(-1)} ms`;
}

/** True while a process with this pid exists (zombies included). */
function exists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Runs the supervised core with `coreArgs`, bursts, stops; returns the restart count. */
async function supervisedBursts(
  coreArgs: string[],
  mayDie = false,
): Promise<number> {
  const port = freePort();
  await using sup = spawnSupervisedCore(port, [
    "--store",
    "memory",
    ...coreArgs,
  ]);
  const corePids = sup.corePids;
  try {
    await sup.waitLine(
      new RegExp(`core listening on 127\\.0\\.0\\.1:${port} \\(h2c\\)$`),
    );
    const waits = await burstAndProbe(port, mayDie);

    sup.proc.kill("SIGTERM");
    const status = await sup.status;
    assert.equal(status.code, 0, sup.lines.join("\n"));
    assert(sup.lines.some((l) => /core stopped$/.test(l)), "no graceful stop");
    const pids = corePids();
    assert.equal(
      pids.length,
      1 + sup.lines.filter((l) => /restarted as/.test(l)).length,
    );
    for (const pid of pids) {
      assert(!exists(pid), `core pid ${pid} left running`);
    }
    console.log(
      `core ${coreArgs.join(" ") || "(defaults)"} restarted ${
        pids.length - 1
      } times in ${BURSTS} bursts; answered after ${summary(waits)}`,
    );
    return pids.length - 1;
  } finally {
    // The core runs in its own process group: if the test failed before a
    // clean stop, killing the supervisor would leave it serving the port.
    for (const pid of corePids().filter(exists)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Exited in the meantime.
      }
    }
  }
}

Deno.test("the core (its own HTTP/2 transport, the default) takes 20 GOAWAY bursts without dying once", async () => {
  const restarts = await supervisedBursts([]);
  assert.equal(restarts, 0, "the core died and was restarted");
});

Deno.test("the core on --transport node (GOAWAY guard on) takes 20 GOAWAY bursts without dying once", async () => {
  const restarts = await supervisedBursts(["--transport", "node"]);
  assert.equal(restarts, 0, "the guarded core died and was restarted");
});

Deno.test("supervisor/main.ts keeps the port answering through 20 bursts when the guard is off", async () => {
  // Without the guard, Deno 2.9.6 usually aborts on the first burst; the
  // supervisor must bring the core back each time (the probes prove it).
  await supervisedBursts(
    ["--transport", "node", "--goaway-guard", "off"],
    true,
  );
});

Deno.test("listenWithGoawayGuard() serves 20 GOAWAY bursts without the process dying", async () => {
  await using server = spawnWatched([
    "run",
    "--allow-net",
    "--allow-env",
    "tests/fixtures/goaway_server.ts",
    "--port",
    "0",
    "--guard",
  ]);
  const ready = await server.waitLine(/core listening on 127\.0\.0\.1:\d+$/);
  const port = Number(ready.split(":").at(-1));

  const waits = await burstAndProbe(port);

  server.proc.kill("SIGTERM");
  const status = await server.status;
  // Same process all along: it answered every probe and exits on our signal.
  assert.equal(status.code, 0, server.lines.join("\n"));
  assert.equal(server.lines.filter((l) => /listening on/.test(l)).length, 1);
  console.log(`guarded server answered after ${summary(waits)}`);
});
