/**
 * grpc.health.v1.Health (Check, Watch, List) on the core, with the
 * maintained `grpc-health-check` package.
 *
 * The core is SERVING while it accepts calls and every health source says it
 * can serve; NOT_SERVING once shutdown begins or while any source (the
 * message store, a broker) reports it cannot. The overall status (service
 * name "") and `chat.ChatService` move together. Watch streams get each
 * change, and shutdown ends them with UNAVAILABLE after NOT_SERVING.
 *
 * @example A store reporting into the core
 * ```ts
 * const source: HealthSource = {
 *   name: "store",
 *   serving: () => db.connected,
 *   watch: (onChange) => db.onStateChange(onChange),
 * };
 * await startCoreServer({ healthSources: [source] });
 * ```
 */
import type {
  Server,
  ServerWritableStream,
  UntypedHandleCall,
} from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import type { CallScopes } from "../grpc/call_scope.ts";
import type { Logger } from "../log.ts";
import { captureServices, endOnShutdown } from "./services.ts";

/** A dependency of the core that can stop serving: the store, a broker. */
export interface HealthSource {
  /** Named in the log line when it goes down or comes back, e.g. "store". */
  readonly name: string;
  /** Whether it can serve now. */
  serving(): boolean;
  /**
   * Calls `onChange` whenever `serving()` may have changed; returns the
   * function that stops watching.
   */
  watch(onChange: () => void): () => void;
}

/** The health service names the core answers for. */
export const HEALTH_SERVICES: readonly string[] = Object.freeze([
  "",
  "chat.ChatService",
]);

/**
 * Watch, answered here for a service the core does not serve: one
 * SERVICE_UNKNOWN, and the stream stays open until the client goes, as
 * grpc.health.v1 asks (the core never starts serving another name).
 * grpc-health-check would do the same, but keeps a set of watchers per
 * name it is asked about and never drops one: a client watching a new name
 * each time (~250 bytes each) grew the core without bound.
 */
function watchServedOnly(watch: UntypedHandleCall): UntypedHandleCall {
  return ((call: ServerWritableStream<{ service: string }, unknown>) => {
    if (HEALTH_SERVICES.includes(call.request.service)) {
      return (watch as (call: unknown) => void)(call);
    }
    call.write({ status: "SERVICE_UNKNOWN" });
  }) as UntypedHandleCall;
}

/** The core's health: sources plus shutdown, published over grpc.health.v1. */
export class CoreHealth {
  readonly #impl = new HealthImplementation();
  readonly #sources: readonly HealthSource[];
  readonly #log: Logger;
  readonly #unwatch: (() => void)[] = [];
  #status: ServingStatus | undefined;
  #shuttingDown = false;

  constructor(sources: readonly HealthSource[], log: Logger) {
    this.#sources = sources;
    this.#log = log;
    for (const source of sources) {
      this.#unwatch.push(source.watch(() => this.#refresh()));
    }
    this.#refresh();
  }

  /** The overall status now. */
  get status(): ServingStatus {
    return this.#status!;
  }

  /** Adds the Health service to `server`; Watch streams end at shutdown. */
  addTo(server: Pick<Server, "addService">, calls: CallScopes): void {
    for (
      const { definition, implementation } of captureServices((s) =>
        this.#impl.addToServer(s)
      )
    ) {
      const wrapped = { ...implementation };
      for (const [name, method] of Object.entries(definition)) {
        // proto-loader definitions are keyed "Watch", the handlers "watch".
        const key = name in implementation ? name : method.originalName;
        if (method.responseStream && key !== undefined) {
          const handler = name === "Watch"
            ? watchServedOnly(implementation[key])
            : implementation[key];
          wrapped[key] = endOnShutdown(calls, handler);
        }
      }
      server.addService(definition, wrapped);
    }
  }

  /** Shutdown began: NOT_SERVING from now on, whatever the sources say. */
  shuttingDown(): void {
    this.#shuttingDown = true;
    this.#refresh();
  }

  /** Stops watching the sources. */
  close(): void {
    for (const unwatch of this.#unwatch.splice(0)) unwatch();
  }

  #refresh(): void {
    const down = this.#sources.filter((s) => !s.serving()).map((s) => s.name);
    const next: ServingStatus = this.#shuttingDown || down.length > 0
      ? "NOT_SERVING"
      : "SERVING";
    if (next === this.#status) return;
    if (this.#status !== undefined || next !== "SERVING") {
      const why = this.#shuttingDown
        ? "shutting down"
        : down.length > 0
        ? `${down.join(", ")} down`
        : "all sources up";
      this.#log.info(`health: ${next} (${why})`);
    }
    this.#status = next;
    for (const name of HEALTH_SERVICES) this.#impl.setStatus(name, next);
  }
}
