/**
 * Test support: a real core on 127.0.0.1:0 and real grpc-js clients.
 */
import type * as grpc from "@grpc/grpc-js";
import { ServerCredentials } from "@grpc/grpc-js";
import { type ChatClient, createChatClient } from "../../client/rpc.ts";
import {
  type CoreServer,
  startCoreServer,
  type StartOptions,
} from "../../server/server.ts";

export interface CoreFixture extends AsyncDisposable {
  core: CoreServer;
  client: ChatClient;
  addr: string;
  /** Another client on a connection of its own; closed with the fixture. */
  newClient(options?: grpc.ChannelOptions): ChatClient;
}

let channelSeq = 0;

/**
 * The core's HTTP/2 transport for the whole run: `CHAT_TEST_TRANSPORT=node`
 * runs the core suites on Deno's node:http2 (tests/core_transports_test.ts
 * does), otherwise the default.
 */
const transportUnderTest = (() => {
  const raw = Deno.env.get("CHAT_TEST_TRANSPORT");
  return raw === "node" || raw === "h2" ? raw : undefined;
})();

/** Starts a core and a client; `await using` closes both. */
export async function startCore(
  options: StartOptions = {},
): Promise<CoreFixture> {
  const core = await startCoreServer({
    port: 0,
    ...(transportUnderTest ? { transport: transportUnderTest } : {}),
    ...options,
  });
  const addr = `127.0.0.1:${core.port}`;
  const clients: ChatClient[] = [];
  const newClient = (channelOptions: grpc.ChannelOptions = {}) => {
    // A distinct option value gives each client its own connection.
    const c = createChatClient(addr, {
      "test.channel": ++channelSeq,
      ...channelOptions,
    });
    clients.push(c);
    return c;
  };
  const client = newClient();
  return {
    core,
    client,
    addr,
    newClient,
    async [Symbol.asyncDispose]() {
      for (const c of clients) c.close();
      await core.shutdown(500);
    },
  };
}

const insecure = () => ServerCredentials.createInsecure();

/** A bare grpc-js server bound on 127.0.0.1:0, a client, and their disposal. */
export interface BareServer extends Disposable {
  port: number;
  client: ChatClient;
}

/** Binds `server` (services added) on port 0 and opens a client to it. */
export async function serveBare(server: grpc.Server): Promise<BareServer> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      insecure(),
      (err, p) => err ? reject(err) : resolve(p),
    )
  );
  const client = createChatClient(`127.0.0.1:${port}`);
  return {
    port,
    client,
    [Symbol.dispose]() {
      client.close();
      server.forceShutdown();
    },
  };
}

const guarded = new WeakSet<object>();

/**
 * The next items of a stream up to and including the first that `isLast`
 * accepts, read one at a time (each within `timeoutMs`): for a subscriber
 * whose count of messages is not known, only its last one.
 */
export async function takeUntil<T>(
  stream: NodeJS.ReadableStream | grpc.ClientReadableStream<T>,
  isLast: (item: T) => boolean,
  timeoutMs = 5000,
): Promise<T[]> {
  const items: T[] = [];
  while (items.length === 0 || !isLast(items[items.length - 1])) {
    items.push(...await take(stream, 1, timeoutMs));
  }
  return items;
}

/**
 * Resolves with the next `n` items of a readable stream, or rejects on
 * error/timeout. The stream keeps a no-op 'error' listener afterwards, so a
 * status arriving after the test moved on (e.g. at shutdown) is not an
 * uncaught error that hides the real failure.
 */
export function take<T>(
  stream: NodeJS.ReadableStream | grpc.ClientReadableStream<T>,
  n: number,
  timeoutMs = 5000,
): Promise<T[]> {
  const s = stream as unknown as NodeJS.ReadableStream;
  if (!guarded.has(s)) {
    guarded.add(s);
    s.on("error", () => {});
  }
  return new Promise((resolve, reject) => {
    const items: T[] = [];
    const done = (err?: unknown) => {
      clearTimeout(timer);
      s.off("data", onData);
      s.off("error", onError);
      s.off("end", onEnd);
      // Paused, later messages wait in the stream for the next take().
      s.pause();
      err ? reject(err) : resolve(items);
    };
    const onData = (item: T) => {
      items.push(item);
      if (items.length === n) done();
    };
    const onError = (err: unknown) => done(err);
    const onEnd = () =>
      done(new Error(`stream ended after ${items.length} of ${n} items`));
    const timer = setTimeout(
      () => done(new Error(`timed out after ${items.length} of ${n} items`)),
      timeoutMs,
    );
    s.on("data", onData);
    s.on("error", onError);
    s.on("end", onEnd);
    s.resume();
  });
}

/** Resolves with the error that ends a stream (rejects if it ends cleanly or times out). */
export function streamError(
  stream: { on(e: string, f: (x: unknown) => void): unknown },
  timeoutMs = 5000,
): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error("no error before timeout")),
      timeoutMs,
    );
    stream.on("error", (err) => {
      clearTimeout(timer);
      resolve(err as grpc.ServiceError);
    });
    stream.on("data", () => {});
  });
}

/** Polls until `predicate` holds, failing after `timeoutMs`. */
export async function eventually(
  predicate: () => boolean,
  what: string,
  timeoutMs = 3000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) {
      throw new Error(`not true within ${timeoutMs} ms: ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Awaits a promise that should reject; returns its error. */
export async function rejection(
  p: Promise<unknown>,
): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error("expected a rejection");
}

/** Reads a stream to its end, resolving with the items left, or rejecting with its error. */
export function rest<T>(
  stream: NodeJS.ReadableStream | grpc.ClientReadableStream<T>,
  timeoutMs = 5000,
): Promise<T[]> {
  const s = stream as unknown as NodeJS.ReadableStream;
  return new Promise((resolve, reject) => {
    const items: T[] = [];
    const timer = setTimeout(
      () => reject(new Error(`stream did not end within ${timeoutMs} ms`)),
      timeoutMs,
    );
    s.on("data", (item: T) => items.push(item));
    s.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on("end", () => {
      clearTimeout(timer);
      resolve(items);
    });
    s.resume();
  });
}

/**
 * The contents of the CHAT messages in `room`'s history (up to 100) at the
 * core on `port`, read by a subscriber of its own.
 */
export async function roomContents(
  port: number,
  room: string,
): Promise<string[]> {
  const reader = createChatClient(`127.0.0.1:${port}`);
  try {
    const stream = reader.subscribeMessages({
      room,
      user: "reader",
      history: 100,
    });
    const [welcome] = await take<{ offset: bigint }>(stream, 1);
    const history = await take<{ content: string; type: number }>(
      stream,
      Math.min(Number(welcome.offset), 100),
    );
    stream.cancel();
    return history.filter((m) => m.type === 0).map((m) => m.content); // CHAT
  } finally {
    reader.close();
  }
}
