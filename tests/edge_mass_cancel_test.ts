/**
 * Many browsers leaving at once through one edge: the edge forwards each
 * cancel to the core on the one upstream connection all its clients share.
 * The core's rapid-reset guard (http2/server/connection.ts) must not end the
 * other users' calls on that connection: past its limit it sends
 * GOAWAY(ENHANCE_YOUR_CALM), the calls open on the connection run to their
 * end, the edge takes a new connection for the next ones and sends the
 * calls that raced the GOAWAY again there (edge/upstream/h2_upstream.ts).
 * Real core, real edge, connect-web clients.
 */
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/chat_pb.ts";
import { startCoreEdge, waitUntil } from "./fixtures/edge_stack.ts";

/** Quick subscribe-and-leave calls: three times the core's burst. */
const LEAVERS = 3000;
const AT_ONCE = 100;
const STAYERS = 20;

async function counter(metricsPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`))
    .text();
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  assert.ok(m, `${name} in\n${text}`);
  return Number(m[1]);
}

Deno.test("edge: 3000 browsers subscribing and leaving within a second cost the edge's other calls nothing", async () => {
  await using stack = await startCoreEdge({}, { metricsPort: 0 });
  const client = createClient(
    ChatService,
    createConnectTransport({ baseUrl: stack.url, fetch: stack.fetch }),
  );

  // Users who stay, subscribed over the edge's upstream connection.
  const stay = new AbortController();
  const stayers = Array.from(
    { length: STAYERS },
    (_, i) =>
      client.subscribeMessages({ room: "stay", user: `stayer${i}` }, {
        signal: stay.signal,
      })[Symbol.asyncIterator](),
  );
  for (const [i, it] of stayers.entries()) {
    assert.match((await it.next()).value!.content, new RegExp(`stayer${i}`));
  }

  // Others subscribe and leave at once, many at a time.
  let next = 0;
  const leave = async () => {
    while (next < LEAVERS) {
      const n = next++;
      const ctl = new AbortController();
      const it = client.subscribeMessages(
        { room: `brief${n % 50}`, user: `leaver${n}` },
        { signal: ctl.signal },
      )[Symbol.asyncIterator]();
      assert.match((await it.next()).value!.content, /leaver/);
      ctl.abort();
      await it.next().catch(() => {});
    }
  };
  // And others post meanwhile: calls that race the core's GOAWAY are sent
  // again on the edge's next connection, not failed.
  let posted = 0;
  let leaving = true;
  const post = async () => {
    while (leaving) {
      await client.sendMessage({
        room: "bystanders",
        user: "poster",
        content: `post ${posted++}`,
      });
    }
  };
  const posters = Array.from({ length: 10 }, post);
  const leavers = Array.from({ length: AT_ONCE }, leave);
  await Promise.allSettled(leavers);
  leaving = false;
  await Promise.allSettled(posters);
  await Promise.all([...leavers, ...posters]);
  assert.ok(posted > 10, `${posted} posts`);
  await waitUntil(
    () => stack.core.snapshot().subscribers === STAYERS,
    10_000,
    "the leavers' subscriptions to end at the core",
  );
  // The core did tell the edge's connection to go away (else this test
  // proves nothing)...
  assert.ok(
    await counter(
      stack.core.metricsPort!,
      "chat_connections_reset_flood_total",
    ) >= 1,
  );

  // ...and those who stayed are still subscribed: a message reaches each.
  const sent = await client.sendMessage({
    room: "stay",
    user: "poster",
    content: "still here?",
  });
  assert.ok(sent.messageId !== "");
  for (const [i, it] of stayers.entries()) {
    const got = await it.next();
    assert.equal(got.done, false, `stayer${i}'s stream ended`);
    assert.equal(got.value!.content, "still here?", `stayer${i}`);
  }
  stay.abort();
  await Promise.all(stayers.map((it) => it.next().catch(() => {})));
});
