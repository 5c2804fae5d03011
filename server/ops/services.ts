/**
 * Plumbing shared by the health and reflection services: take the service
 * definitions and handlers a package would register, so that the core can
 * wrap them before they reach the grpc-js Server, and tie their streams to
 * the server's shutdown.
 *
 * grpc-health-check and @grpc/reflection register themselves through
 * `addToServer({ addService })`; they accept any object with that method,
 * which is the one door used here.
 */
import type {
  ServiceDefinition,
  UntypedHandleCall,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import type { CallScopes } from "../grpc/call_scope.ts";
import { toServiceError } from "../grpc/status.ts";

/** One service as a package would add it to a grpc-js Server. */
export interface CapturedService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/** Runs `register` against a stand-in server and returns what it added. */
export function captureServices(
  register: (server: { addService: AddService }) => void,
): CapturedService[] {
  const added: CapturedService[] = [];
  register({
    addService: (definition, implementation) =>
      added.push({
        definition: definition as ServiceDefinition,
        implementation: implementation as UntypedServiceImplementation,
      }),
  });
  return added;
}

// deno-lint-ignore no-explicit-any
type AddService = (definition: any, implementation: any) => void;

/**
 * Wraps a streaming handler so that server shutdown ends its call with
 * `UNAVAILABLE` (its own code never ends it: a Watch or a reflection stream
 * stays open as long as the client wants).
 */
export function endOnShutdown(
  calls: CallScopes,
  handler: UntypedHandleCall,
): UntypedHandleCall {
  return ((call: EventEmitter, ...rest: unknown[]) => {
    calls.enter(call, {
      finish(reason) {
        if (reason.code === "cancelled") return;
        call.emit("error", toServiceError(reason));
      },
    });
    // grpc-js emits 'cancelled' after every end, so the scope closes then.
    (handler as (call: EventEmitter, ...rest: unknown[]) => void)(
      call,
      ...rest,
    );
  }) as UntypedHandleCall;
}
