/**
 * The page's entry: joins a room, keeps the room and metrics streams alive, sends.
 *
 * Unary and server-streaming calls go to the edge as gRPC-Web (connect-web);
 * the two calls that stream requests live in `stream_panels.ts` and go over the
 * WebSocket bridge. Streams are tied to AbortControllers so leaving a room, or
 * the page, cancels them and the core drops the subscriber at once.
 *
 * @module
 */
import { MetricsChart } from "./metrics_chart.ts";
import { keepStreaming, type StreamState } from "./resilient_stream.ts";
import { RoomView } from "./room_view.ts";
import { createChatClient } from "./rpc.ts";
import { setUpStreamPanels } from "./stream_panels.ts";

const $ = <T extends Element = HTMLElement>(id: string) =>
  document.getElementById(id) as unknown as T;

const client = createChatClient(location.origin);
const view = new RoomView($("messages"));
const pageLife = new AbortController();
addEventListener("pagehide", () => pageLife.abort());
let roomLife: AbortController | undefined;
let who: { user: string; room: string } | undefined;
const panels = setUpStreamPanels(() => who);

function showStatus(text: string, kind: string): void {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

function join(user: string, room: string): void {
  roomLife?.abort();
  const life = roomLife = new AbortController();
  const signal = AbortSignal.any([life.signal, pageLife.signal]);
  who = { user, room };
  view.clear();
  for (const id of ["message-input", "send"]) {
    $<HTMLInputElement>(id).disabled = false;
  }
  $<HTMLInputElement>("message-input").placeholder = `Message #${room}`;
  panels.joined();
  let lost = false;
  keepStreaming({
    signal,
    open: (s) => client.subscribeMessages({ room, user }, { signal: s }),
    onMessage: (message) => view.add(message, user),
    onState: (state: StreamState) => {
      if (state.kind === "live") {
        showStatus(`Live in #${room} as ${user}`, "live");
        if (lost) view.note("Reconnected.");
        lost = false;
      } else if (state.kind === "retrying") {
        const secs = (state.inMs / 1000).toFixed(1);
        showStatus(`Reconnecting in ${secs} s…`, "retrying");
        if (!lost) {
          view.note(`Connection lost (${state.reason}); reconnecting…`);
        }
        lost = true;
      } else if (!lost) {
        showStatus(`Joining #${room}…`, "connecting");
      }
    },
  });
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
  if (!who || !content) return;
  input.value = "";
  try {
    await client.sendMessage({ ...who, content });
  } catch (err) {
    view.note(`Not sent: ${err instanceof Error ? err.message : err}`);
    input.value = content;
  }
});

const chart = new MetricsChart(
  $<SVGSVGElement>("metrics-chart"),
  $("metrics-other"),
);
keepStreaming({
  signal: pageLife.signal,
  open: (s) =>
    client.streamMetrics({ instanceId: "web", intervalSeconds: 1 }, {
      signal: s,
    }),
  onMessage: (metric) => chart.push(metric),
  onState: (state) => {
    $("metrics-status").textContent = state.kind === "live"
      ? "live"
      : state.kind === "retrying"
      ? `reconnecting in ${(state.inMs / 1000).toFixed(1)} s…`
      : "connecting…";
  },
});

const params = new URLSearchParams(location.search);
const presetUser = params.get("user");
const presetRoom = params.get("room");
if (presetRoom) $<HTMLInputElement>("room").value = presetRoom;
if (presetUser) {
  $<HTMLInputElement>("user").value = presetUser;
  join(presetUser, presetRoom || $<HTMLInputElement>("room").value);
}
