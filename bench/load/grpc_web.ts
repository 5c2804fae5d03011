/**
 * Edge scenarios: gRPC-Web (and Connect) unary and gRPC-Web server
 * streaming through the edge, to set beside the same load sent to the core
 * directly.
 *
 * The client is plain `fetch` with `application/grpc-web+proto` bodies, as a
 * browser's would be. The framing comes from protocol/ (the same parser the
 * edge uses); a response counts as ok only with `grpc-status: 0`, in the
 * trailer frame or in trailers-only headers. Streaming subscribers go through
 * the edge while the publisher calls the core directly, so the delivery
 * latency includes the edge's hop.
 *
 * @module
 */
import {
  encodeEnvelope,
  EnvelopeParser,
  FLAG_TRAILER,
  parseGrpcWebTrailer,
} from "../../protocol/mod.ts";
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "../../gen/chat_pb.ts";
import { latencyFields, round1, round4, sleep } from "../stats.ts";
import {
  closeAll,
  connect,
  encode,
  paths,
  readStringField,
  unaryRaw,
} from "../wire.ts";

const HEADERS = {
  "content-type": "application/grpc-web+proto",
  "x-grpc-web": "1",
  "accept": "application/grpc-web+proto",
};

/** Posts one gRPC-Web call; `onMessage` gets each data frame's payload. */
async function grpcWebCall(
  url: string,
  request: Uint8Array,
  onMessage: (data: Uint8Array) => void,
  signal?: AbortSignal,
): Promise<string> {
  const res = await fetch(url, {
    method: "POST",
    headers: HEADERS,
    body: encodeEnvelope(0, request) as Uint8Array<ArrayBuffer>,
    signal,
  });
  let status = res.headers.get("grpc-status") ?? undefined;
  const parser = new EnvelopeParser({
    maxMessageBytes: 16 << 20,
    allowedFlags: FLAG_TRAILER,
  });
  if (res.body) {
    // Cancel the reader on abort: an aborted fetch alone can leave a read of
    // a busy body pending forever.
    const reader = res.body.getReader();
    const cancel = () => reader.cancel().catch(() => {});
    signal?.addEventListener("abort", cancel);
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        for (const env of parser.push(value)) {
          if (env.flags & FLAG_TRAILER) {
            status = parseGrpcWebTrailer(env.data)["grpc-status"];
          } else onMessage(env.data);
        }
      }
    } finally {
      signal?.removeEventListener("abort", cancel);
    }
  }
  return status ?? "missing";
}

/**
 * Posts one Connect unary call (binary: the bare message, no envelope), as
 * connect-web does; ok only with HTTP 200 and a response message.
 */
async function connectUnaryCall(url: string, request: Uint8Array) {
  const res = await fetch(url, {
    method: "POST",
    headers: CONNECT_HEADERS,
    body: request as Uint8Array<ArrayBuffer>,
  });
  const body = new Uint8Array(await res.arrayBuffer());
  return res.status === 200 && body.length > 0
    ? "0"
    : `HTTP ${res.status} ${new TextDecoder().decode(body.subarray(0, 200))}`;
}

const CONNECT_HEADERS = {
  "content-type": "application/proto",
  "connect-protocol-version": "1",
};

/** Parameters of the gRPC-Web unary scenario. */
export interface WebUnaryOptions {
  /** Edge base URL, e.g. `http://127.0.0.1:8080`. */
  edge: string;
  c: number;
  durationS: number;
  warmupS: number;
  /** Connect's unary protocol instead of gRPC-Web. */
  connect?: boolean;
}

/** SendMessage through the edge at concurrency C; calls/s and latency. */
export async function runGrpcWebUnary(
  o: WebUnaryOptions,
): Promise<Record<string, unknown>> {
  const url = `${o.edge}${paths.SendMessage}`;
  const start = performance.now();
  const measureFrom = start + o.warmupS * 1000,
    stopAt = measureFrom + o.durationS * 1000;
  const lat: number[] = [];
  let errors = 0, all = 0;
  let firstError: string | undefined;
  await Promise.all(Array.from({ length: o.c }, async (_, g) => {
    const req = encode(SendMessageRequestSchema, {
      user: `web${g}`,
      content: "hello",
      room: "web-bench",
    });
    while (performance.now() <= stopAt) {
      const t0 = performance.now();
      let ok = false;
      try {
        let got = o.connect === true;
        const status = o.connect
          ? await connectUnaryCall(url, req)
          : await grpcWebCall(url, req, () => got = true);
        ok = status === "0" && got;
        if (!ok) firstError ??= `grpc-status ${status}`;
        all++;
      } catch (err) {
        firstError ??= (err as Error).message;
        await sleep(1);
      }
      const t1 = performance.now();
      if (t0 >= measureFrom && t1 <= stopAt) ok ? lat.push(t1 - t0) : errors++;
    }
  }));
  return {
    scenario: "web_unary",
    protocol: o.connect ? "connect" : "grpc-web",
    ok: errors === 0 && lat.length > 0,
    c: o.c,
    duration_s: o.durationS,
    calls: lat.length,
    ops_total: all,
    errors,
    calls_per_s: round1(lat.length / o.durationS),
    ...latencyFields("", lat),
    ...(firstError ? { first_error: firstError } : {}),
  };
}

/** Parameters of the gRPC-Web streaming scenario. */
export interface WebStreamOptions extends Omit<WebUnaryOptions, "c"> {
  /** The core, for the publisher. */
  addr: string;
  subs: number;
}

/** S subscribers through the edge, one direct publisher; deliveries/s and latency. */
export async function runGrpcWebStream(
  o: WebStreamOptions,
): Promise<Record<string, unknown>> {
  const room = `webfan-${Date.now()}`;
  const abort = new AbortController();
  const [pub] = await connect(o.addr, 1);
  const lat: number[] = [];
  let received = 0, welcomes = 0, lastRecv = 0, sent = 0, errors = 0;
  const subs: Promise<string>[] = [];
  try {
    const ready = Array.from(
      { length: o.subs },
      (_, i) =>
        new Promise<void>((resolve) => {
          const req = encode(SubscribeRequestSchema, {
            room,
            user: `websub${i}`,
          });
          subs.push(
            grpcWebCall(`${o.edge}${paths.SubscribeMessages}`, req, (data) => {
              const now = performance.now();
              const content = readStringField(data, 3) ?? "";
              if (content.startsWith("Welcome to room ")) {
                return welcomes++, resolve();
              }
              const bar = content.indexOf("|", 3);
              if (
                !content.startsWith("FO|") || content.slice(3, bar) === "w"
              ) return;
              lat.push(now - Number(content.slice(bar + 1)));
              received++, lastRecv = now;
            }, abort.signal).catch((e) => (resolve(), (e as Error).name)),
          );
        }),
    );
    await Promise.race([Promise.all(ready), sleep(10_000)]);
    const publish = async (untilMs: number, warm: boolean) => {
      for (let seq = 0; performance.now() < untilMs; seq++) {
        const content = `FO|${warm ? "w" : seq}|${performance.now()}`;
        try {
          await unaryRaw(
            pub,
            paths.SendMessage,
            encode(SendMessageRequestSchema, { user: "pub", room, content }),
          );
          if (!warm) sent++;
        } catch {
          errors++;
          await sleep(1);
        }
      }
    };
    await publish(performance.now() + o.warmupS * 1000, true);
    await sleep(200);
    const t0 = performance.now();
    await publish(t0 + o.durationS * 1000, false);
    const pubEnd = performance.now();
    const expected = sent * o.subs;
    while (received < expected && performance.now() - pubEnd < 2000) {
      await sleep(10);
    }
    const windowMs = Math.max(pubEnd - t0, lastRecv - t0);
    return {
      scenario: "web_stream",
      ok: errors === 0 && welcomes === o.subs && sent > 0,
      subs: o.subs,
      duration_s: o.durationS,
      sent,
      publish_errors: errors,
      expected,
      received,
      lost: expected - received,
      welcomes,
      delivered_per_s: round1(received / (windowMs / 1000)),
      delivery_window_s: round4(windowMs / 1000),
      ops_total: received,
      ...latencyFields("delivery_", lat),
    };
  } finally {
    abort.abort();
    await Promise.allSettled(subs);
    closeAll([pub]);
  }
}
