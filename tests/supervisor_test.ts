/**
 * superviseChild() and supervisor/main.ts with a scripted child
 * (tests/fixtures/goaway_child.ts) that crashes, aborts, fails before ready,
 * ignores SIGTERM or exits cleanly on cue.
 */
import assert from "node:assert/strict";
import {
  superviseChild,
  type SupervisorEvent,
  type SupervisorOptions,
} from "../supervisor/supervisor.ts";
import { spawnWatched } from "./fixtures/goaway_process.ts";

const CHILD = new URL("./fixtures/goaway_child.ts", import.meta.url).pathname;

/** Supervises the scripted child with `plan`; collects events and lines. */
async function supervise(
  plan: string,
  options: Partial<SupervisorOptions> = {},
) {
  const dir = await Deno.makeTempDir();
  const events: SupervisorEvent[] = [];
  const logs: string[] = [];
  const output: string[] = [];
  const waiters = new Set<() => void>();
  const sup = superviseChild({
    cmd: Deno.execPath(),
    args: [
      "run",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      CHILD,
    ],
    env: { CHILD_PLAN: plan, CHILD_STATE: `${dir}/starts`, NO_COLOR: "1" },
    log: (line, level) => logs.push(`${level} ${line}`),
    output: (line) => output.push(line),
    onEvent: (event) => {
      events.push(event);
      for (const wake of waiters) wake();
    },
    ...options,
  });
  /** Resolves once `n` ready events were seen. */
  const readyCount = (n: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (events.filter((e) => e.type === "ready").length < n) return;
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
      check();
    });
  return {
    sup,
    events,
    logs,
    output,
    readyCount,
    async [Symbol.asyncDispose]() {
      await sup.stop("SIGKILL");
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const exits = (events: SupervisorEvent[]) =>
  events.flatMap((e) => e.type === "exit" ? [[e.code, e.signal]] : []);

Deno.test("superviseChild() restarts a child that exits 134 or dies of SIGABRT, within a second", async () => {
  await using t = await supervise("crash,abort,serve");
  await t.readyCount(3);
  assert.equal(t.sup.restarts, 2);
  assert.deepEqual(exits(t.events), [[134, null], [134, "SIGABRT"]]);
  const latencies = t.events.flatMap((e) =>
    e.type === "ready" && e.sinceExitMs !== undefined ? [e.sinceExitMs] : []
  );
  assert.equal(latencies.length, 2);
  for (const ms of latencies) {
    assert.ok(ms < 1_000, `ready ${ms} ms after exit`);
  }
  // One lifecycle line per start or restart, none from the child itself.
  assert.equal(t.logs.length, 3);
  assert.match(
    t.logs[1],
    /exited \(code 134\); restarted as pid \d+ after 100 ms/,
  );
  assert.match(t.logs[2], /exited \(signal SIGABRT\); restarted as pid \d+/);
  assert.ok(t.output.includes("child: serve start 2 args []"));
});

Deno.test("superviseChild().stop() forwards SIGTERM and ends when the child exits", async () => {
  await using t = await supervise("serve");
  await t.readyCount(1);
  const exit = await t.sup.stop("SIGTERM");
  assert.deepEqual(exit, { code: 0, reason: "stopped" });
  assert.ok(t.output.includes("child: got SIGTERM"), t.output.join("\n"));
  assert.equal(t.sup.pid, undefined);
  assert.equal(t.sup.restarts, 0);
});

Deno.test("superviseChild() doubles the delay for children that die before ready, then gives up", async () => {
  await using t = await supervise("fail", { baseDelayMs: 20, giveUpAfter: 3 });
  const exit = await t.sup.done;
  assert.deepEqual(exit, { code: 1, reason: "gave-up" });
  const delays = t.events.flatMap((e) =>
    e.type === "restart" ? [e.delayMs] : []
  );
  assert.deepEqual(delays, [40, 80]);
  assert.equal(t.sup.restarts, 2);
  assert.match(t.logs.at(-1)!, /^error .*3 failures before ready, giving up/);
  assert.match(t.logs[0], /^info supervisor: started child pid/);
  assert.match(t.logs[1], /^warn supervisor: child pid \d+ exited .*restarted/);
});

Deno.test("superviseChild() resets the backoff once a child was ready, and caps it", async () => {
  await using t = await supervise("fail,fail,fail,crash,fail,serve", {
    baseDelayMs: 20,
    maxDelayMs: 100,
  });
  await t.readyCount(2);
  const delays = t.events.flatMap((e) =>
    e.type === "restart" ? [e.delayMs] : []
  );
  assert.deepEqual(delays, [40, 80, 100, 20, 40]);
});

Deno.test("superviseChild() does not restart a child that exits 2 (bad configuration) and ends with 2", async () => {
  await using t = await supervise("bad-config,serve");
  assert.deepEqual(await t.sup.done, { code: 2, reason: "bad-config" });
  assert.equal(t.sup.restarts, 0);
  assert.deepEqual(exits(t.events), [[2, null]]);
  assert.ok(t.events.some((e) => e.type === "badconfig"));
});

Deno.test("superviseChild() is done when the child exits 0 on its own", async () => {
  await using t = await supervise("done");
  assert.deepEqual(await t.sup.done, { code: 0, reason: "clean-exit" });
  assert.equal(t.sup.restarts, 0);
});

Deno.test("superviseChild().stop() kills a child that ignores the signal", async () => {
  await using t = await supervise("ignore-term", { killAfterMs: 300 });
  await t.readyCount(1);
  const exit = await t.sup.stop("SIGTERM");
  assert.deepEqual(exit, { code: 1, reason: "stopped" });
  assert.deepEqual(exits(t.events).at(-1), [137, "SIGKILL"]);
  assert.ok(t.logs.some((l) => /ignored SIGTERM; killing it/.test(l)));
});

Deno.test("supervisor/main.ts passes arguments through and forwards SIGINT", async () => {
  await using sup = spawnWatched(
    [
      "run",
      "--allow-run",
      "--allow-env",
      "supervisor/main.ts",
      "--port",
      "6000",
    ],
    { SUPERVISOR_CHILD: "tests/fixtures/goaway_child.ts", CHILD_PLAN: "serve" },
  );
  await sup.waitLine(/^child listening on/);
  assert.ok(sup.lines.includes("child: serve start 0 args [--port 6000]"));
  sup.proc.kill("SIGINT");
  const status = await sup.status;
  assert.equal(status.code, 0, sup.lines.join("\n"));
  // Exactly one SIGINT reached the child: its own process group keeps a
  // terminal's Ctrl-C from doubling up with the forwarded one.
  assert.equal(sup.lines.filter((l) => l === "child: got SIGINT").length, 1);
  assert.ok(
    sup.lines.some((l) => /child exited \(code 0\) after stop/.test(l)),
  );
});

Deno.test("supervisor/main.ts rejects a bad setting at start-up", async () => {
  await using sup = spawnWatched(
    ["run", "--allow-run", "--allow-env", "supervisor/main.ts"],
    { SUPERVISOR_BASE_DELAY_MS: "soon" },
  );
  const status = await sup.status;
  assert.equal(status.code, 2);
  assert.ok(
    sup.lines.some((l) =>
      /SUPERVISOR_BASE_DELAY_MS must be a positive integer/.test(l)
    ),
  );
});
