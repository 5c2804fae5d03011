/**
 * A grpc-js server interceptor that counts every call grpc-js serves (all
 * but the direct unary path, which counts its own) into {@linkcode CallStats}.
 *
 * A call ends either with the status the handler sends or with the client's
 * cancel (including an expired deadline), whichever comes first; each call
 * is counted once.
 */
import {
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  status,
} from "@grpc/grpc-js";
import type { CallStats } from "./call_stats.ts";

/** Returns the interceptor; pass it in the Server's `interceptors` option. */
export function callStatsInterceptor(stats: CallStats): ServerInterceptor {
  return (descriptor, call: ServerInterceptingCallInterface) => {
    const path = descriptor.path;
    const started = performance.now();
    let done = false;
    const end = (code: number) => {
      if (done) return;
      done = true;
      stats.end(path, code, performance.now() - started);
    };
    stats.start(path);
    return new ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => end(status.CANCELLED) }),
      sendStatus: (st, next) => {
        end(st.code);
        next(st);
      },
    });
  };
}
