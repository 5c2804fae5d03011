/**
 * The edge in front of three real cores (child processes): calls are spread
 * over them, a core killed with SIGKILL is out within a second, its streams'
 * clients get UNAVAILABLE and reconnect through the edge, and the core gets
 * traffic again once it is back.
 *
 * The cores share no broker here, so a direct grpc-js subscriber on each
 * core shows which core served each SendMessage.
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/chat_pb.ts";
import { createChatClient } from "../client/rpc.ts";
import type { BalancedUpstream } from "../edge/upstream/balancer.ts";
import { startEdge } from "./fixtures/edge_stack.ts";
import {
  type CoreProcess,
  QUIET_CORE_ARGS,
  spawnCore,
} from "./support/core_process.ts";
import { eventually, take } from "./support/core.ts";

const CORE_ARGS = QUIET_CORE_ARGS;

/** Counts the messages of room `room` that reach a core, by direct subscription. */
async function watch(core: CoreProcess, room: string) {
  const client = createChatClient(core.addr);
  const sub = client.subscribeMessages({ room, user: "watcher" });
  await take(sub, 1); // the welcome: subscribed
  const seen: string[] = [];
  sub.on("data", (m: { content: string }) => seen.push(m.content));
  sub.resume();
  return {
    seen,
    close() {
      sub.cancel();
      client.close();
    },
  };
}

Deno.test("edge with --upstream a,b,c balances, fails over within a second, and uses a core again once it is back", async () => {
  const cores = await Promise.all([0, 1, 2].map(() => spawnCore(CORE_ARGS)));
  const watchers: Awaited<ReturnType<typeof watch>>[] = [];
  await using edge = startEdge(cores[0].url, {
    upstream: cores.map((c) => c.url),
  });
  const balancer = edge.upstream as BalancedUpstream;
  const client = createClient(
    ChatService,
    createConnectTransport({ baseUrl: edge.url, fetch: edge.fetch }),
  );
  try {
    for (const c of cores) watchers.push(await watch(c, "lb"));
    await eventually(
      () => balancer.members().every((m) => m.healthy),
      "every core healthy",
    );

    const send = (content: string) =>
      client.sendMessage({ user: "u", room: "lb", content });
    for (let i = 0; i < 12; i++) await send(`a${i}`);
    await eventually(
      () => watchers.reduce((n, w) => n + w.seen.length, 0) === 12,
      "12 deliveries",
    );
    for (const w of watchers) assert.equal(w.seen.length, 4, "round robin");

    // A stream through the edge on the core that will die.
    const streams = [0, 1, 2].map(() => {
      const ctl = new AbortController();
      const it = client.subscribeMessages({ room: "s", user: "v" }, {
        signal: ctl.signal,
      })[Symbol.asyncIterator]();
      return { ctl, it };
    });
    for (const s of streams) {
      assert.match((await s.it.next()).value!.content, /^Welcome/);
    }
    assert.deepEqual(balancer.members().map((m) => m.outstanding), [1, 1, 1]);

    const killedAt = Date.now();
    await cores[1].kill("SIGKILL");
    watchers[1].close();
    // The stream on the dead core ends UNAVAILABLE; the others go on.
    const ended = await Promise.allSettled(
      streams.map((s) =>
        Promise.race([
          s.it.next(),
          new Promise((r) => setTimeout(r, 1500, "still open")),
        ])
      ),
    );
    const failures = ended.filter((e) => e.status === "rejected");
    assert.equal(failures.length, 1);
    assert.equal(
      ConnectError.from((failures[0] as PromiseRejectedResult).reason).code,
      Code.Unavailable,
    );
    // Its client reconnects through the edge and lands on a live core.
    const again = client.subscribeMessages({ room: "s", user: "v" })
      [Symbol.asyncIterator]();
    assert.match((await again.next()).value!.content, /^Welcome/);
    await again.return?.();

    await eventually(
      () => !balancer.members()[1].healthy,
      "core 1 marked down",
      1000 - (Date.now() - killedAt),
    );
    const health = await (await edge.fetch(`${edge.url}/healthz`)).json();
    assert.equal(health.status, "ok");
    assert.deepEqual(
      health.upstreams.map((m: { healthy: boolean }) => m.healthy),
      [true, false, true],
    );
    const before = watchers.map((w) => w.seen.length);
    for (let i = 0; i < 10; i++) await send(`b${i}`);
    await eventually(
      () => watchers[0].seen.length + watchers[2].seen.length === 18,
      "10 more deliveries on the live cores",
    );
    assert.equal(watchers[1].seen.length, before[1]);

    // Back on the same port: probes find it and it takes calls again.
    cores[1] = await spawnCore(CORE_ARGS, cores[1].port);
    const back = await watch(cores[1], "lb");
    watchers.push(back);
    await eventually(
      () => balancer.members()[1].healthy,
      "core 1 healthy again",
      2000,
    );
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 9; i++) await send(`c${i}`);
    await eventually(() => back.seen.length >= 1, "core 1 served again");
    for (const s of streams) s.ctl.abort();
  } finally {
    for (const w of watchers) w.close();
    await Promise.all(cores.map((c) => c.kill()));
  }
});

for (const upstreamClient of ["h2", "node"] as const) {
  Deno.test(`edge (${upstreamClient} client) with a core that stalls (SIGSTOP): no new calls go to it, the calls on it end UNAVAILABLE after --upstream-stall-ms instead of hanging, and it is used again once it answers`, async () => {
    const cores = await Promise.all([0, 1].map(() => spawnCore(CORE_ARGS)));
    await using edge = startEdge(cores[0].url, {
      upstream: cores.map((c) => c.url),
      upstreamClient,
      upstreamStallMs: 2000,
    });
    const balancer = edge.upstream as BalancedUpstream;
    const client = createClient(
      ChatService,
      createConnectTransport({ baseUrl: edge.url, fetch: edge.fetch }),
    );
    const wake = () => Deno.kill(cores[1].pid, "SIGCONT");
    try {
      await eventually(
        () => balancer.members().every((m) => m.healthy),
        "both healthy",
      );
      // One stream on each core (least outstanding, ties in turn).
      const streams = [0, 1].map(() =>
        client.subscribeMessages({ room: "z", user: "v" })
          [Symbol.asyncIterator]()
      );
      for (const s of streams) {
        assert.match((await s.next()).value!.content, /^Welcome/);
      }
      assert.deepEqual(balancer.members().map((m) => m.outstanding), [1, 1]);

      Deno.kill(cores[1].pid, "SIGSTOP");
      const stalledAt = Date.now();
      const settled = streams.map((s) =>
        s.next().then(
          () => "data",
          (e) => ({ err: ConnectError.from(e), at: Date.now() - stalledAt }),
        )
      );
      await eventually(
        () => !balancer.members()[1].healthy,
        "the stalled core marked down",
        1500,
      );
      // New calls go to the live core only, and are answered.
      for (let i = 0; i < 4; i++) {
        await client.sendMessage({ user: "u", room: "z", content: `n${i}` });
      }
      // The stream on the live core saw the first of them; the one on the
      // stalled core ends UNAVAILABLE once the stall outlasts 2 s.
      const live = await settled[0];
      const stalled = await Promise.race([
        settled[1],
        new Promise<string>((r) => setTimeout(r, 8000, "still open")),
      ]);
      assert.equal(live, "data");
      assert.ok(typeof stalled === "object", String(stalled));
      assert.equal(stalled.err.code, Code.Unavailable);
      assert.match(
        stalled.err.rawMessage,
        /^upstream unavailable: upstream \(127\.0\.0\.1:\d+\) did not answer for \d+ ms$/,
      );
      assert.ok(
        stalled.at >= 1750 && stalled.at < 8000,
        `ended after ${stalled.at} ms`,
      );
      await eventually(
        () => balancer.members()[1].outstanding === 0,
        "nothing open on the stalled core",
      );

      // It answers again: probes find it, and it takes calls.
      wake();
      await eventually(
        () => balancer.members()[1].healthy,
        "healthy again",
        3000,
      );
      const again = [0, 1].map(() =>
        client.subscribeMessages({ room: "z", user: "w" })
          [Symbol.asyncIterator]()
      );
      for (const s of again) {
        assert.match((await s.next()).value!.content, /^Welcome/);
      }
      // The first went to it (fewest open calls): it is used again.
      assert.ok(balancer.members()[1].outstanding >= 1);
      for (const s of [...streams, ...again]) await s.return?.();
    } finally {
      try {
        wake();
      } catch { /* gone */ }
      await Promise.all(cores.map((c) => c.kill()));
    }
  });
}
