/**
 * The page's entry: joins a room, keeps the room and metrics streams alive, sends.
 *
 * Unary calls go to the edge as gRPC-Web (connect-web), and so do the room
 * and metrics streams when the page came over HTTP/2 or HTTP/3; over HTTP/1.x
 * those two ride the WebSocket bridge (`bridge_transport.ts` says why). The two
 * calls that stream requests live in `stream_panels.ts` and always go over the
 * bridge. Streams are tied to AbortControllers so leaving a room, or
 * the page, cancels them and the core drops the subscriber at once. Every call
 * carries the session's bearer token, if any (`auth.ts`).
 *
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type PageTokenSource,
  renewalDelayMs,
  resolveToken,
  tokenExpiryMs,
  tokenRefusals,
} from "./auth.ts";
import { MetricsChart } from "./metrics_chart.ts";
import { PageGate } from "./page_gate.ts";
import { keepStreaming } from "./resilient_stream.ts";
import { startRoomSession } from "./room_session.ts";
import { RoomView } from "./room_view.ts";
import { createChatClient, streamsOver } from "./rpc.ts";
import { bridgeUrl } from "./ws_call.ts";
import { setUpStreamPanels } from "./stream_panels.ts";
import { mayPass, newIdempotencyKey, retryUntilSent } from "./send_retry.ts";

const $ = <T extends Element = HTMLElement>(id: string) =>
  document.getElementById(id) as unknown as T;

let token = "";
const params = new URLSearchParams(location.search);
// Over HTTP/1.x each open stream holds one of the browser's six connections
// per host: the streams take the WebSocket bridge there (bridge_transport.ts).
const navigation = performance.getEntriesByType("navigation")[0] as
  | PerformanceNavigationTiming
  | undefined;
const streams = streamsOver(params.get("streams"), navigation?.nextHopProtocol);
document.body.dataset.streams = streams;
const client = createChatClient(
  location.origin,
  () => token,
  streams,
  bridgeUrl(location),
);
const view = new RoomView($("messages"), $("cap-note"));
// Streams end when the page is hidden and resume when it is shown again
// (from the back/forward cache).
const gate = new PageGate();
let roomLife: AbortController | undefined;
let who: { user: string; room: string } | undefined;
const panels = setUpStreamPanels(() => who, () => token);
/** Retries of messages not sent yet, run again after each reconnection. */
let unsent = new Set<() => Promise<boolean>>();

function showStatus(text: string, kind: string): void {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

async function join(user: string, room: string): Promise<void> {
  roomLife?.abort();
  const life = roomLife = new AbortController();
  const signal = life.signal;
  who = undefined;
  // The last user's renewal: a join that fails leaves none behind.
  clearTimeout(renewal);
  renewing = false;
  unsent = new Set();
  view.clear();
  showStatus(`Joining #${room}…`, "connecting");
  const tokenNote = $("token-status");
  try {
    const got = await resolveToken(
      $<HTMLInputElement>("token").value,
      user,
      location.origin,
    );
    if (signal.aborted) return;
    token = got.token;
    tokenNote.dataset.source = got.source;
    tokenNote.textContent = got.source === "pasted"
      ? "Using the pasted token."
      : got.source === "development"
      ? `Using a development token for ${user} from the edge.`
      : "No token (the server runs without authentication).";
  } catch (err) {
    showStatus("Not joined", "retrying");
    view.note(`Could not get a token: ${errorText(err)}`);
    return;
  }
  if (metrics.refused || metrics.token !== token) {
    metrics.life.abort();
    watchMetrics();
  }
  who = { user, room };
  renewBeforeExpiry();
  for (const id of ["message-input", "send"]) {
    $<HTMLInputElement>(id).disabled = false;
  }
  $<HTMLInputElement>("message-input").placeholder = `Message #${room}`;
  panels.joined();
  startRoomSession({
    client,
    view,
    user,
    room,
    signal,
    gate,
    token: pageToken,
    status: showStatus,
    onResume: () => unsent.forEach((retry) => retry()),
  });
}

/**
 * Sends once; resolves to the error text, or undefined when it was stored.
 * Every try of one typed line carries the same `key`: the server stores it
 * once, so a try whose answer was lost (the edge or core went away
 * mid-call) can be sent again without showing twice.
 */
async function trySend(
  to: { user: string; room: string },
  content: string,
  idempotencyKey: string,
): Promise<{ text: string; mayPass: boolean } | undefined> {
  try {
    await client.sendMessage({ ...to, content, idempotencyKey });
    return undefined;
  } catch (err) {
    return { text: errorText(err), mayPass: mayPass(err) };
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const user = $<HTMLInputElement>("user").value.trim();
  const room = $<HTMLInputElement>("room").value.trim();
  if (user && room) join(user, room);
});

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $<HTMLInputElement>("message-input");
  const content = input.value.trim();
  const to = who;
  if (!to || !content) return;
  input.value = "";
  const key = newIdempotencyKey();
  const error = await trySend(to, content, key);
  if (error === undefined || to !== who) return;
  const retries = unsent;
  let passing = error.mayPass;
  const retry = view.unsent(content, error.text, async () => {
    const again = await trySend(to, content, key);
    if (again === undefined) retries.delete(retry);
    passing = again?.mayPass ?? false;
    return again?.text;
  });
  retries.add(retry);
  // Sent again by itself while the failure may pass (the store down), not
  // only when the room resumes or on Retry.
  retryUntilSent(retry, () => passing && retries.has(retry) && who === to);
});

/**
 * The page's token for its streams. `renewing()`: the token in use has
 * expired and its renewal is still to come (slow, or failed and tried
 * again); the core's refusal of it is then not final, and the streams retry
 * (backing off) until the new token lands.
 */
const pageToken: PageTokenSource = {
  current: () => token,
  renewing() {
    const expiry = tokenExpiryMs(token);
    return renewing && expiry !== undefined && expiry <= Date.now();
  },
};

const chart = new MetricsChart($("metrics-chart"), $("metrics-other"));
/** The metrics stream: what ends it, its token, whether that was refused. */
interface MetricsWatch {
  life: AbortController;
  token: string;
  refused: boolean;
}
let metrics: MetricsWatch;

/**
 * Opens the metrics stream with the session's token. A core with auth on
 * refuses it without one (or with an expired one): retrying could not help,
 * so it waits, saying why, and the next join opens it again at once.
 */
function watchMetrics(): void {
  const current: MetricsWatch = metrics = {
    life: new AbortController(),
    token,
    refused: false,
  };
  const refusals = tokenRefusals(pageToken);
  keepStreaming({
    signal: current.life.signal,
    gate,
    // Refused with the token in use now: no retry helps. One renewed
    // since (a development token before it expired) is tried again, with
    // the usual backoff.
    fatal: (err) =>
      ConnectError.from(err).code === Code.Unauthenticated &&
      refusals.final(),
    open: (s) => {
      refusals.opened();
      return client.streamMetrics({ instanceId: "web", intervalSeconds: 1 }, {
        signal: s,
      });
    },
    onMessage: (metric) => chart.push(metric),
    onState: (state) => {
      if (state.kind === "failed") current.refused = true;
      $("metrics-status").textContent = state.kind === "live"
        ? "live"
        : state.kind === "retrying"
        ? `reconnecting in ${(state.inMs / 1000).toFixed(1)} s…`
        : state.kind === "failed"
        ? `off until you join with a valid token (${state.reason})`
        : state.kind === "paused"
        ? "paused while the page is hidden"
        : "connecting…";
    },
  });
}
watchMetrics();

/**
 * How long a renewal may take: past it the streams reopen with the token they
 * had (a request on a connection that died while the page was away may get no
 * answer for minutes, and the page would say it was hidden all along).
 */
const RENEWAL_TIMEOUT_MS = 5_000;

/** Counts hides, so that a renewal outlived by the next hide opens nothing. */
let hides = 0;
addEventListener("pagehide", () => {
  hides++;
  // Due while the page is cached, it would run beside the return's own
  // renewal (renewTokenThenReopen), which times the next one.
  clearTimeout(renewal);
  gate.close();
  panels.hidden();
});
addEventListener("pageshow", (event) => {
  if (event.persisted) renewTokenThenReopen();
});

/**
 * Back from the back/forward cache: a development token may have expired
 * while the page was away (they last an hour), so a new one is asked for
 * before the streams resume; a pasted token is the user's to replace.
 */
async function renewTokenThenReopen(): Promise<void> {
  const hidesBefore = hides;
  if (who && $("token-status").dataset.source === "development") {
    showStatus("Back: renewing the development token…", "connecting");
    const renewed = await renewDevToken();
    renewBeforeExpiry(renewed ? undefined : RENEWAL_RETRY_MS);
  }
  if (hides === hidesBefore) gate.reopen();
}

/**
 * A development token is renewed a minute before it expires: the core ends
 * every stream opened with it then, and the page, holding a new one, opens
 * them again (after the usual backoff) instead of stopping ("refused: token
 * expired").
 */
let renewal: ReturnType<typeof setTimeout> | undefined;
/** After a renewal that failed (the edge down, say), the next try waits this long. */
const RENEWAL_RETRY_MS = 15_000;
/** A renewal of the token in use is scheduled or under way. */
let renewing = false;
function renewBeforeExpiry(retryMs?: number): void {
  clearTimeout(renewal);
  renewing = false;
  const expiry = tokenExpiryMs(token);
  if ($("token-status").dataset.source !== "development" || !expiry) return;
  renewing = true;
  renewal = setTimeout(async () => {
    const before = token;
    const renewed = await renewDevToken(retryMs === undefined);
    // An answer with no new token (the user left, the edge gives none now)
    // is not asked again: timed on the old token's expiry, that would be
    // at once, in a loop, once it passed.
    if (!renewed) renewBeforeExpiry(RENEWAL_RETRY_MS);
    else if (token !== before) renewBeforeExpiry();
    else renewing = false;
  }, retryMs ?? renewalDelayMs(expiry, Date.now()));
}

/**
 * Asks the edge for a new development token for the joined user; false if
 * it could not (said in the list when `say`).
 */
async function renewDevToken(say = true): Promise<boolean> {
  const to = who;
  if (!to) return true;
  try {
    const got = await resolveToken(
      "",
      to.user,
      location.origin,
      (url, init) =>
        fetch(url, {
          ...init,
          signal: AbortSignal.timeout(RENEWAL_TIMEOUT_MS),
        }),
    );
    if (got.source === "development" && to === who) {
      token = metrics.token = got.token;
    }
    return true;
  } catch (err) {
    const why = err instanceof DOMException && err.name === "TimeoutError"
      ? `no answer in ${RENEWAL_TIMEOUT_MS / 1000} s`
      : errorText(err);
    if (say) view.note(`Could not renew the development token: ${why}`);
    return false;
  }
}

const presetUser = params.get("user");
const presetRoom = params.get("room");
if (presetRoom) $<HTMLInputElement>("room").value = presetRoom;
if (presetUser) {
  $<HTMLInputElement>("user").value = presetUser;
  join(presetUser, presetRoom || $<HTMLInputElement>("room").value);
}
